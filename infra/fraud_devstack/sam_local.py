"""Run the SAM CLI with its Lambda containers adapted to this machine's Docker.

    .venv-sam/bin/python infra/fraud_devstack/sam_local.py [--host-network] [--container-env FILE]
        [--record FILE] -- local start-api ...

Runs in the SAM CLI's own virtualenv (stdlib + docker-py + samcli; nothing of this project), by
path, and patches docker-py's ``ContainerCollection.create`` before SAM starts:

* ``--host-network``: a container whose entrypoint is the Runtime Interface Emulator gets host
  networking and no port map, and the emulator is told to listen where SAM will call it
  (``--runtime-interface-emulator-address 127.0.0.1:<the host port SAM chose>``) and to serve its
  Runtime API on a free loopback port (``--runtime-api-address``: warm containers share the host's
  network, so the default 127.0.0.1:9001 would collide). Stock SAM publishes a port and expects a
  bridge; a daemon started with ``--bridge=none`` drops the port silently and SAM times out.
* ``--container-env FILE``: variables set in every emulator container. SAM passes only the
  variables a function declares in the template; boto3's ``AWS_ENDPOINT_URL`` (moto_server)
  is not one of them, and must not be in the deployed template. And where the template removes a
  variable with ``!Ref AWS::NoValue``, SAM sets it to ``""`` while Lambda leaves it unset (the
  settings then refuse ``FRAUD_KAFKA_SECURITY_PROTOCOL=""``): empty variables are dropped.
* ``--record FILE``: the id of every container created is appended, so ``make sam-down`` removes
  exactly those.

And always: SAM's reader of ``AWS::ApiGatewayV2::Route`` resources takes the function's name from
the integration's ``IntegrationUri`` only when it is a plain string, so with the template's
``!Sub "...functions/${ApiFunction.Arn}/invocations"`` every route answers 502 ("argument of
type 'NoneType' is not iterable"); SAM's own ``LambdaUri`` parses that ``!Sub`` fine, so the
route reader is given it as a fallback (:func:`install_route_resolver`). And SAM waits up to 1 s
after each warm invocation for its log reader to see the ``REPORT RequestId`` line, which it only
recognises when at most one line precedes it in a chunk of container output: when the function's
own log line, ``END`` and ``REPORT`` arrive together, the request takes a second longer (about
half of warm requests here). :func:`install_report_detector` also recognises it anywhere in the chunk.

This relies on SAM and docker-py internals: the SAM CLI version is pinned in the Makefile and
tests/unit/test_sam_local.py checks the rewrite through docker-py's own argument conversion.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

EMULATOR = "/var/rapid/aws-lambda-rie"
"""The entrypoint SAM gives every Lambda container (samcli.local.docker.lambda_container)."""
EMULATOR_PORT = "8080"
"""The container port SAM maps to the host port it will call (Container.RAPID_PORT_CONTAINER)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_emulator(entrypoint: Any) -> bool:
    """Whether a container's entrypoint is SAM's Runtime Interface Emulator."""
    if isinstance(entrypoint, str):
        entrypoint = entrypoint.split()
    return bool(entrypoint) and entrypoint[0] == EMULATOR


def _host_port(binding: Any) -> int:
    """The host port of a docker-py port binding: ``port``, ``(ip, port)`` or a list of those."""
    if isinstance(binding, list):
        binding = binding[0]
    if isinstance(binding, tuple):
        binding = binding[1]
    return int(binding)


def host_network_kwargs(kwargs: Mapping[str, Any], *, runtime_api_port: int) -> dict[str, Any]:
    """docker-py ``containers.create`` arguments of an emulator container, rewritten for host
    networking (see the module docstring); other arguments are kept."""
    ports = dict(kwargs.get("ports") or {})
    binding = ports.pop(EMULATOR_PORT, None) or ports.pop(f"{EMULATOR_PORT}/tcp", None)
    if binding is None:
        raise ValueError(f"an emulator container without SAM's port {EMULATOR_PORT} mapping: {kwargs!r}")
    entrypoint = kwargs["entrypoint"]
    entrypoint = entrypoint.split() if isinstance(entrypoint, str) else list(entrypoint)
    out = {k: v for k, v in kwargs.items() if k != "ports"}
    out["network_mode"] = "host"
    out["entrypoint"] = [
        *entrypoint,
        "--runtime-interface-emulator-address",
        f"127.0.0.1:{_host_port(binding)}",
        "--runtime-api-address",
        f"127.0.0.1:{runtime_api_port}",
    ]
    # Debug ports are mapped to the same port inside and out: with host networking they need no map.
    return out


def lambda_environment(kwargs: Mapping[str, Any], extra: Mapping[str, str]) -> dict[str, Any]:
    """``kwargs`` with the container's environment as Lambda would have it: SAM writes ``""`` for a
    variable the template removes with ``!Ref AWS::NoValue`` (and for an intrinsic it cannot
    resolve), where Lambda has no variable at all, so empty values are dropped; then ``extra``
    (the local run's endpoints) is set on top."""
    env = kwargs.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    kept = {k: v for k, v in env.items() if v != ""}
    return {**kwargs, "environment": {**kept, **extra}}


def install(
    collection: type,
    *,
    host_network: bool,
    container_env: Mapping[str, str] | None = None,
    record: Path | None = None,
    port_finder: Callable[[], int] = free_port,
) -> None:
    """Wrap ``collection.create`` (docker-py's ``ContainerCollection``) as the module docstring says."""
    original = collection.create  # type: ignore[attr-defined]

    def create(self: Any, image: Any, command: Any = None, **kwargs: Any) -> Any:
        if is_emulator(kwargs.get("entrypoint")):
            if host_network:
                kwargs = host_network_kwargs(kwargs, runtime_api_port=port_finder())
            kwargs = lambda_environment(kwargs, container_env or {})
        container = original(self, image, command, **kwargs)
        if record is not None:
            with record.open("a") as fh:
                fh.write(f"{container.id}\n")
        return container

    create.__wrapped__ = original  # type: ignore[attr-defined]
    collection.create = create  # type: ignore[attr-defined]


def route_function_name(
    original: Callable[[dict[str, Any], str], tuple[str | None, str | None]],
    parse_uri: Callable[[Any], str | None],
    resources: dict[str, Any],
    integration_target: str,
) -> tuple[str | None, str | None]:
    """(function name, payload format version) of a route's integration: SAM's answer, else the
    function named by a ``Fn::Sub`` IntegrationUri (``parse_uri`` is SAM's ``LambdaUri.get_function_name``)."""
    name, version = original(resources, integration_target)
    if name is not None:
        return name, version
    integration = resources.get(integration_target.split("/")[-1].strip(), {})
    properties = integration.get("Properties", {})
    uri = properties.get("IntegrationUri")
    if integration.get("Type") == "AWS::ApiGatewayV2::Integration" and isinstance(uri, dict):
        return parse_uri(uri), properties.get("PayloadFormatVersion")
    return name, version


def install_route_resolver() -> None:
    """Patch SAM's ``CfnApiProvider._get_route_function_name`` with :func:`route_function_name`."""
    from samcli.commands.local.lib.swagger.integration_uri import LambdaUri  # type: ignore[import-not-found]
    from samcli.lib.providers.cfn_api_provider import CfnApiProvider  # type: ignore[import-not-found]

    original = CfnApiProvider._get_route_function_name

    def resolve(resources: dict[str, Any], integration_target: str) -> tuple[str | None, str | None]:
        return route_function_name(original, LambdaUri.get_function_name, resources, integration_target)

    CfnApiProvider._get_route_function_name = staticmethod(resolve)


REPORT_LINE = re.compile(
    r"^REPORT RequestId:\s.+ Duration:\s.+\sMemory Size:\s.+\sMax Memory Used:\s.+", re.M
)


def report_seen(output: bytes) -> bool:
    """Whether a chunk of container output holds the emulator's REPORT line, on any line."""
    return REPORT_LINE.search(output.decode("utf-8", "replace").replace("\r", "\n")) is not None


def install_report_detector() -> None:
    """Patch SAM's ``Container._handle_data_writing`` to signal a REPORT line wherever it is."""
    from samcli.local.docker.container import Container  # type: ignore[import-not-found]

    original = Container._handle_data_writing

    def handle(output_stream: Any, output_data: bytes, event: Any) -> None:
        original(output_stream, output_data, event)
        if event is not None and report_seen(output_data):
            event.set()

    Container._handle_data_writing = staticmethod(handle)


def read_container_env(path: Path) -> dict[str, str]:
    """Variables of a SAM env-vars file (``{"Parameters": {...}}``) or a flat JSON object."""
    data = json.loads(path.read_text())
    values = data.get("Parameters", data) if isinstance(data, dict) else {}
    return {str(k): str(v) for k, v in values.items()}


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(this wrapper's options, SAM's arguments), split at ``--``."""
    args = list(argv)
    if "--" in args:
        at = args.index("--")
        return args[:at], args[at + 1 :]
    return [], args


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ours, sam_args = split_argv(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="sam_local.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--host-network", action="store_true", help="host networking for Lambda containers")
    parser.add_argument("--container-env", type=Path, help="env-vars JSON set in every Lambda container")
    parser.add_argument("--record", type=Path, help="append the id of every container created here")
    options = parser.parse_args(ours)

    from docker.models.containers import ContainerCollection  # type: ignore[import-untyped]

    install(
        ContainerCollection,
        host_network=options.host_network,
        container_env=read_container_env(options.container_env) if options.container_env else None,
        record=options.record,
    )
    install_route_resolver()
    install_report_detector()
    from samcli.cli.main import cli  # type: ignore[import-not-found]

    sys.argv = ["sam", *sam_args]
    return int(cli() or 0)


if __name__ == "__main__":
    sys.exit(main())
