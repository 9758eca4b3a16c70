"""Read template.yaml with its CloudFormation short-form tags (!Ref, !Sub, ...), and evaluate the
intrinsic functions it uses for given parameter values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"

NO_VALUE = object()
"""What ``!Ref AWS::NoValue`` resolves to; removed from the list or mapping around it."""

PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
}
"""Pseudo parameters for resolving; add ``AWS::StackName`` per case."""

_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps each short-form tag as ``{"Ref": x}`` or ``{"Fn::Name": x}``."""


def _tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return dict(yaml.load(path.read_text(), Loader=CfnLoader))


def resolve(node: Any, values: Mapping[str, Any], conditions: Mapping[str, Any]) -> Any:
    """``node`` as CloudFormation would deploy it with these parameter ``values``.

    ``values`` holds parameter values (a list for a CommaDelimitedList) and pseudo parameters.
    Condition functions, ``Fn::If``, ``Ref``, ``Fn::Sub``, ``Fn::Join``, ``Fn::Split`` and
    ``Fn::Select`` are evaluated; references to resources (``Ref``, ``Fn::GetAtt``, ``${X.Arn}``)
    stay as written, and ``AWS::NoValue`` disappears.
    """
    if isinstance(node, list):
        items = [resolve(item, values, conditions) for item in node]
        return [item for item in items if item is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref":
            return NO_VALUE if arg == "AWS::NoValue" else values.get(arg, node)
        if key in ("Condition", "Fn::Condition") and isinstance(arg, str):
            return resolve(conditions[arg], values, conditions)
        if key == "Fn::If":
            condition, when_true, when_false = arg
            chosen = when_true if resolve(conditions[condition], values, conditions) else when_false
            return resolve(chosen, values, conditions)
        if key in _FUNCTIONS:
            return _FUNCTIONS[key](resolve(arg, values, conditions), values)
        if key == "Fn::Sub":
            return _sub(arg, values, conditions)
    resolved = {key: resolve(value, values, conditions) for key, value in node.items()}
    return {key: value for key, value in resolved.items() if value is not NO_VALUE}


def _sub(arg: Any, values: Mapping[str, Any], conditions: Mapping[str, Any]) -> str:
    text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], resolve(arg[1], values, conditions))

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        value = variables.get(name, values.get(name))
        return match.group(0) if value is None or isinstance(value, (list, dict)) else str(value)

    return _SUB_VARIABLE.sub(replace, text)


_FUNCTIONS: dict[str, Any] = {
    "Fn::Equals": lambda args, _: args[0] == args[1],
    "Fn::Not": lambda args, _: not args[0],
    "Fn::And": lambda args, _: all(args),
    "Fn::Or": lambda args, _: any(args),
    "Fn::Join": lambda args, _: args[0].join(args[1]),
    "Fn::Split": lambda args, _: args[1].split(args[0]),
    "Fn::Select": lambda args, _: args[1][int(args[0])],
}
