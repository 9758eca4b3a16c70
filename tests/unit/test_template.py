"""template.yaml, samconfig.toml and docs/deploy.md, parsed: security posture, handler paths, the
stream error handling they promise, and deploy settings that must not drift apart."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cfn import TEMPLATE, load_template

ROOT = Path(__file__).resolve().parents[2]
SAMCONFIG = ROOT / "samconfig.toml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
STACK_PREFIX = "fraud-detection-"
PROBES = {"/health", "/ready"}
EMPTY = '""'
MSK_PORTS = {"9092": "plaintext", "9094": "TLS", "9096": "SASL/SCRAM", "9098": "IAM access control"}
# The result publisher (KafkaSink) is built from the bootstrap servers alone; it speaks SASL only
# once one of these settings appears in its code.
PUBLISHER_SOURCES = (
    ROOT / "layers" / "fraud_core" / "fraud_core" / "stream" / "sinks.py",
    ROOT / "functions" / "stream" / "fraud_stream" / "wiring.py",
)
SASL_SETTINGS = ("security_protocol", "sasl_mechanism")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def samconfig() -> dict[str, Any]:
    return tomllib.loads(SAMCONFIG.read_text())


@pytest.fixture(scope="module")
def environments(samconfig: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every samconfig environment that deploys, with its stack, region and parsed overrides."""
    envs = {}
    for name, commands in samconfig.items():
        if not isinstance(commands, dict) or "deploy" not in commands:
            continue
        settings = {**commands.get("global", {}).get("parameters", {}), **commands["deploy"]["parameters"]}
        envs[name] = {
            **settings,
            "raw_overrides": settings.get("parameter_overrides", []),
            "overrides": parameter_overrides(settings.get("parameter_overrides", [])),
        }
    return envs


@pytest.fixture(scope="module")
def deploy_doc() -> str:
    return DEPLOY_DOC.read_text()


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def parameter_overrides(raw: str | list[str]) -> dict[str, str]:
    """``Key=Value`` pairs as SAM reads them: list items or one string, quotes removed."""
    pairs = {}
    for item in [raw] if isinstance(raw, str) else raw:
        for token in shlex.split(item):
            key, sep, value = token.partition("=")
            assert sep, f"not Key=Value: {token!r}"
            pairs[key] = value
    return pairs


def parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """What CloudFormation resolves on a new stack: the overrides, else the template defaults."""
    values: dict[str, Any] = {}
    for name, spec in template["Parameters"].items():
        value = str(overrides.get(name, spec.get("Default", "")))
        values[name] = value.split(",") if spec["Type"] == "CommaDelimitedList" else value
    return values


def evaluate(node: Any, params: dict[str, Any], conditions: dict[str, Any]) -> Any:
    """The few intrinsic functions that Conditions and Rules of this template use."""
    if isinstance(node, list):
        return [evaluate(item, params, conditions) for item in node]
    if not isinstance(node, dict) or len(node) != 1:
        return node
    ((fn, arg),) = node.items()
    if fn == "Ref":
        return params[arg]
    if fn in ("Condition", "Fn::Condition"):
        return evaluate(conditions[arg], params, conditions)
    args = evaluate(arg, params, conditions) if fn != "Fn::Join" else arg
    if fn == "Fn::Equals":
        return args[0] == args[1]
    if fn == "Fn::Not":
        return not args[0]
    if fn == "Fn::And":
        return all(args)
    if fn == "Fn::Or":
        return any(args)
    if fn == "Fn::Join":
        return arg[0].join(evaluate(arg[1], params, conditions))
    raise NotImplementedError(fn)


def failed_rules(template: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """AssertDescriptions of the template's Rules that these parameter values violate."""
    failed = []
    conditions = template["Conditions"]
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], params, conditions):
            continue
        failed += [
            a["AssertDescription"]
            for a in rule["Assertions"]
            if not evaluate(a["Assert"], params, conditions)
        ]
    return failed


def statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every IAM statement under a function's Policies, whatever the Fn::If around it."""
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            yield node
        for value in node.values():
            yield from statements(value)
    elif isinstance(node, list):
        for item in node:
            yield from statements(item)


def doc_sections(text: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    title = ""
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip()
        sections[title] = sections.get(title, "") + line + "\n"
    return sections


def table_rows(section: str) -> list[list[str]]:
    """Cells of a markdown table's body rows (escaped pipes stay inside their cell)."""
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("|---")
    ][1:]


def shell_commands(text: str) -> list[str]:
    """Commands of the ```bash blocks, with backslash continuations joined."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip():
                commands.append(" ".join(command.split("#")[0].split()))
    return commands


def ports(servers: list[str]) -> set[str]:
    return {server.rsplit(":", 1)[1] for server in servers if server}


def publisher_speaks_sasl() -> bool:
    return any(word in path.read_text() for path in PUBLISHER_SOURCES for word in SASL_SETTINGS)


# -- resources -------------------------------------------------------------------------------------


def test_model_bucket_is_private_versioned_encrypted_and_tls_only(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ModelBucket"]["Properties"]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    statements = template["Resources"]["ModelBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    deny_tls = [
        s
        for s in statements
        if s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    ]
    assert deny_tls
    assert deny_tls[0]["Principal"] == "*"
    assert not [s for s in statements if s["Effect"] == "Allow"]


def test_functions_only_read_the_model_prefix(template: dict[str, Any]) -> None:
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        first = fn["Properties"]["Policies"][0]["Statement"]
        actions = {s["Action"] for s in first}
        assert actions == {"s3:GetObject", "s3:ListBucket"}, name
        get = next(s for s in first if s["Action"] == "s3:GetObject")
        assert get["Resource"] == {"Fn::Sub": "${ModelBucket.Arn}/${ModelPrefix}/*"}


def test_secret_grants_decrypt_only_that_secret_through_secrets_manager(template: dict[str, Any]) -> None:
    # GIVEN every KMS grant of the functions (MSK's SCRAM secrets must use a customer managed key)
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        granted = list(statements(fn["Properties"]["Policies"]))
        readable = [s["Resource"] for s in granted if s["Action"] == "secretsmanager:GetSecretValue"]
        decrypts = [s for s in granted if s["Action"] == "kms:Decrypt"]
        # THEN each decrypt is limited to one readable secret, via Secrets Manager only
        assert len(decrypts) == len(readable), name
        for grant in decrypts:
            condition = grant["Condition"]["StringEquals"]
            assert condition["kms:EncryptionContext:SecretARN"] in readable, name
            assert condition["kms:ViaService"] == {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}
    stream = list(statements(template["Resources"]["StreamFunction"]["Properties"]["Policies"]))
    assert {"Ref": "KafkaSaslScramSecretArn"} in [
        s["Condition"]["StringEquals"]["kms:EncryptionContext:SecretARN"]
        for s in stream
        if s["Action"] == "kms:Decrypt"
    ]


def test_handlers_and_code_paths_exist(template: dict[str, Any]) -> None:
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        props = fn["Properties"]
        module, _, func = props["Handler"].rpartition(".")
        source = ROOT / props["CodeUri"] / (module.replace(".", "/") + ".py")
        assert source.exists(), f"{name}: {source}"
        assert f"def {func}(" in source.read_text()
        assert (ROOT / props["CodeUri"] / "requirements.txt").exists()
    layer = template["Resources"]["FraudCoreLayer"]["Properties"]
    assert (ROOT / layer["ContentUri"] / "fraud_core" / "__init__.py").exists()
    lines = (ROOT / layer["ContentUri"] / "requirements.txt").read_text().splitlines()
    packages = {
        line.split(">")[0].split("=")[0].split("<")[0].strip()
        for line in lines
        if line and not line.startswith("#")
    }
    assert not packages & {"scikit-learn", "pandas", "joblib", "skl2onnx", "matplotlib", "scipy"}


def test_stream_mappings_retry_safely_and_keep_failures(template: dict[str, Any]) -> None:
    mappings = resources(template, "AWS::Lambda::EventSourceMapping")
    assert set(mappings) == {
        "MskEventSource",
        "SelfManagedEventSource",
        "MskLabelsEventSource",
        "SelfManagedLabelsEventSource",
    }
    for name, esm in mappings.items():
        props = esm["Properties"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], name
        assert props["BisectBatchOnFunctionError"] is True
        assert 0 < props["MaximumRetryAttempts"] <= 100
        assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Ref": "StreamFailureTopic"}
        assert len(props["Topics"]) == 1, "an event-source mapping takes exactly one topic"


# -- the HTTP API and its authentication -----------------------------------------------------------


def test_every_api_route_is_wired_to_the_api_function(template: dict[str, Any]) -> None:
    from fraud_api.main import create_app

    routes = resources(template, "AWS::ApiGatewayV2::Route").values()
    wired = {tuple(r["Properties"]["RouteKey"].split(" ", 1)) for r in routes}
    app_routes = {(m, r.path) for r in create_app().routes for m in getattr(r, "methods", set()) - {"HEAD"}}
    assert {route for route in app_routes if not route[1].startswith("/docs/")} <= wired
    assert all(r["Properties"]["Target"] == {"Fn::Sub": "integrations/${ApiIntegration}"} for r in routes)
    integration = template["Resources"]["ApiIntegration"]["Properties"]
    assert "${ApiFunction.Arn}" in integration["IntegrationUri"]["Fn::Sub"]
    assert integration["PayloadFormatVersion"] == "2.0"
    permission = template["Resources"]["ApiInvokePermission"]["Properties"]
    assert permission["FunctionName"] == {"Ref": "ApiFunction"}
    assert permission["SourceArn"]["Fn::Sub"].endswith(":${HttpApi}/*")


def test_routes_require_iam_exactly_when_enabled_except_the_probes(template: dict[str, Any]) -> None:
    conditions = template["Conditions"]
    for iam in ("true", "false"):
        params = parameter_values(template, {"EnableIamAuth": iam})
        for route in resources(template, "AWS::ApiGatewayV2::Route").values():
            _, path = route["Properties"]["RouteKey"].split(" ", 1)
            auth = route["Properties"]["AuthorizationType"]
            if isinstance(auth, dict):
                condition, when_true, when_false = auth["Fn::If"]
                auth = when_true if evaluate(conditions[condition], params, conditions) else when_false
            expected = "AWS_IAM" if iam == "true" and path not in PROBES else "NONE"
            assert auth == expected, (iam, path)


@pytest.mark.parametrize("iam", ["true", "false"])
@pytest.mark.parametrize("api_key", ["", "/fraud/api-key"])
@pytest.mark.parametrize("allow_open", ["true", "false"])
def test_open_api_is_refused_unless_explicitly_allowed(
    template: dict[str, Any], iam: str, api_key: str, allow_open: str
) -> None:
    # GIVEN a combination of the three auth parameters
    params = parameter_values(
        template, {"EnableIamAuth": iam, "ApiKeyParameter": api_key, "AllowOpenApi": allow_open}
    )
    is_open = iam == "false" and not api_key
    # WHEN CloudFormation evaluates the Rules and the stack's outputs
    refused = [d for d in failed_rules(template, params) if "Open API" in d]
    conditions = template["Conditions"]
    announced_open = evaluate(conditions["IsOpenApi"], params, conditions)
    # THEN only an open API without the explicit opt-in is refused, and an open one is announced
    assert bool(refused) == (is_open and allow_open == "false")
    assert announced_open == is_open
    assert (
        "AllowOpenApi=true"
        in template["Rules"]["ApiNeedsAuthentication"]["Assertions"][0]["AssertDescription"]
    )
    output = template["Outputs"]["ApiAuthentication"]["Value"]["Fn::If"]
    assert output[0] == "IsOpenApi"
    assert output[1].startswith("WARNING")


def test_every_parameter_is_described(template: dict[str, Any]) -> None:
    # The CloudFormation console shows descriptions; `sam deploy --guided` shows only names.
    assert [name for name, spec in template["Parameters"].items() if not spec.get("Description")] == []


def test_template_survives_the_sam_transform_for_every_environment(
    template: dict[str, Any], environments: dict[str, dict[str, Any]]
) -> None:
    # cfn-lint 1.x validates SAM templates against a schema and no longer runs the transform, so an
    # invalid `Auth` (or anything else the transform rejects) only fails at `sam deploy` time.
    if not SAM_PYTHON.exists():
        pytest.skip(f"no SAM CLI venv at {SAM_PYTHON} (make sam-venv)")
    cases = {"template defaults": {}} | {name: env["overrides"] for name, env in environments.items()}
    result = subprocess.run(
        [str(SAM_PYTHON), "-c", TRANSFORM_SCRIPT, str(TEMPLATE), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {}


TRANSFORM_SCRIPT = r"""
import json, sys
from pathlib import Path
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

errors = {}
for name, params in json.loads(sys.argv[2]).items():
    template = yaml_parse(Path(sys.argv[1]).read_text())
    for resource in template["Resources"].values():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = "s3://bucket/" + props[key].strip("/") + ".zip"
    try:
        transform(template, params, NoManagedPolicies())
    except Exception as exc:
        errors[name] = str(exc)
print(json.dumps(errors))
"""


# -- samconfig.toml --------------------------------------------------------------------------------


def test_every_environment_sets_every_parameter_with_an_allowed_value(
    template: dict[str, Any], environments: dict[str, dict[str, Any]]
) -> None:
    # A command-line --parameter-overrides replaces this list and SAM sends UsePreviousValue for
    # whatever is missing, so each environment must name every parameter, and only those.
    assert set(environments) >= {"default", "localstack", "prod"}
    for name, env in environments.items():
        assert set(env["overrides"]) == set(template["Parameters"]), name
        raw = env["raw_overrides"]
        for item in [raw] if isinstance(raw, str) else raw:
            assert not re.search(r"(?:^|\s)\w+=(?=\s|$)", item), f'{name}: write an empty value as Key=""'
        for param, value in env["overrides"].items():
            spec = template["Parameters"][param]
            if "AllowedValues" in spec:
                assert value in spec["AllowedValues"], (name, param)
            if "AllowedPattern" in spec:
                assert re.fullmatch(spec["AllowedPattern"], value), (name, param)
            if spec["Type"] == "Number":
                assert (
                    spec.get("MinValue", float("-inf")) <= float(value) <= spec.get("MaxValue", float("inf"))
                )


def test_every_environment_passes_the_template_rules(
    template: dict[str, Any], environments: dict[str, dict[str, Any]]
) -> None:
    for name, env in environments.items():
        assert failed_rules(template, parameter_values(template, env["overrides"])) == [], name


def test_prod_sets_everything_that_has_no_usable_default(environments: dict[str, dict[str, Any]]) -> None:
    prod = environments["prod"]
    values, region = prod["overrides"], prod["region"]
    # VPC to reach ElastiCache and MSK
    assert all(s.startswith("subnet-") for s in values["SubnetIds"].split(","))
    assert all(g.startswith("sg-") for g in values["SecurityGroupIds"].split(","))
    # MSK with SASL/SCRAM, Redis AUTH from Secrets Manager; ARNs in the environment's region
    assert values["KafkaMode"] == "msk"
    assert re.fullmatch(rf"arn:aws:kafka:{region}:\d{{12}}:cluster/[^/]+/[^/]+", values["MskClusterArn"])
    secret = rf"arn:aws:secretsmanager:{region}:\d{{12}}:secret:"
    assert re.fullmatch(secret + r"AmazonMSK_\S+", values["KafkaSaslScramSecretArn"])
    assert re.fullmatch(secret + r"\S+", values["RedisAuthSecretArn"])
    assert values["KafkaBootstrapServers"], "the stream function would keep every result in memory"
    assert all(f".kafka.{region}." in server for server in values["KafkaBootstrapServers"].split(","))
    # an authenticated API, never the opt-in to an open one
    assert values["EnableIamAuth"] == "true"
    assert values["AllowOpenApi"] == "false"


def test_only_prod_needs_the_user_to_fill_in_values(environments: dict[str, dict[str, Any]]) -> None:
    for name, env in environments.items():
        placeholders = [k for k, v in env["overrides"].items() if "REPLACE-ME" in v]
        assert bool(placeholders) == (name == "prod"), (name, placeholders)
        assert bool(env["overrides"]["SubnetIds"]) == bool(env["overrides"]["SecurityGroupIds"]), name


def test_stack_names_prefixes_and_docs_agree(
    environments: dict[str, dict[str, Any]], deploy_doc: str
) -> None:
    stacks = {name: env["stack_name"] for name, env in environments.items()}
    assert len(set(stacks.values())) == len(stacks)
    rows = {row[0].strip("`"): row for row in table_rows(doc_sections(deploy_doc)["Deploying with AWS SAM"])}
    for name, env in environments.items():
        assert env["stack_name"].startswith(STACK_PREFIX), name
        assert env["s3_prefix"] == env["stack_name"], name
        assert env.get("region"), name
        assert rows[name][1] == f"`{env['stack_name']}`", name
        assert ("--config-env" not in rows[name][3]) == (name == "default"), name
        assert name == "default" or f"--config-env {name}" in rows[name][3], name
    # No other stack name anywhere in the docs or the config comments.
    mentioned = set(re.findall(rf"{STACK_PREFIX}[a-z]+", deploy_doc + SAMCONFIG.read_text()))
    assert mentioned <= set(stacks.values())


def test_build_validate_and_deploy_settings_of_every_environment(
    samconfig: dict[str, Any], environments: dict[str, dict[str, Any]]
) -> None:
    assert "s3_bucket" not in SAMCONFIG.read_text(), "resolve_s3 manages the artifact bucket"
    for name, env in environments.items():
        assert samconfig[name]["build"]["parameters"] == {"cached": True, "parallel": True}, name
        assert samconfig[name]["validate"]["parameters"]["lint"] is True, name
        assert env["resolve_s3"] is True, name
        assert "CAPABILITY_IAM" in env["capabilities"].split(), name
    assert environments["prod"]["confirm_changeset"] is True


# -- docs/deploy.md --------------------------------------------------------------------------------


def test_deploy_doc_lists_every_parameter_with_its_real_default(
    template: dict[str, Any], deploy_doc: str
) -> None:
    rows = {row[0].strip("`"): row for row in table_rows(doc_sections(deploy_doc)["Parameters"])}
    assert set(rows) == set(template["Parameters"])
    for name, spec in template["Parameters"].items():
        default = str(spec.get("Default", "")) or EMPTY
        assert rows[name][1] == f"`{default}`", name
        for allowed in spec.get("AllowedValues", []):
            assert f"`{allowed}`" in rows[name][2], (name, allowed)
        assert rows[name][3], name


def test_deploy_doc_commands_never_replace_the_samconfig_parameters(deploy_doc: str) -> None:
    commands = [c for c in shell_commands(deploy_doc) if "sam deploy" in c]
    assert ".venv-sam/bin/sam deploy --config-env prod" in commands
    assert ".venv-sam/bin/sam deploy --guided --config-env prod" in commands
    # The one exception is the documented merge: the environment's own list, then the override.
    overriding = [c for c in commands if "--parameter-overrides" in c]
    assert all(
        "tomllib" in c and "['prod']['deploy']['parameters']['parameter_overrides']" in c for c in overriding
    )


def test_kafka_ports_match_what_each_client_speaks(
    environments: dict[str, dict[str, Any]], deploy_doc: str
) -> None:
    # GIVEN the MSK port table of the docs and which protocol the result publisher speaks
    port_rows = table_rows(doc_sections(deploy_doc)["Kafka ports"])
    assert {row[0]: row[1] for row in port_rows} == MSK_PORTS
    sasl_publisher = publisher_speaks_sasl()
    for name, env in environments.items():
        values = env["overrides"]
        servers = [s for s in values["KafkaBootstrapServers"].split(",") if s]
        has_sasl = bool(values["KafkaSaslScramSecretArn"])
        if not servers:
            continue
        if values["KafkaMode"] == "msk":
            # THEN the publisher uses MSK's port for the protocol it speaks (the mapping finds
            # its own SASL/SCRAM brokers, 9096, from the cluster ARN)
            expected = "9096" if sasl_publisher and has_sasl else "9092"
            assert ports(servers) == {expected}, (
                f"{name}: the publisher speaks {'SASL/SCRAM' if expected == '9096' else 'PLAINTEXT'}, "
                f"MSK serves that on {expected}; update samconfig.toml and docs/deploy.md together"
            )
        if values["KafkaMode"] == "self-managed" and has_sasl:
            assert sasl_publisher, f"{name}: one list cannot serve a SASL consumer and a PLAINTEXT publisher"
    # AND a broker address written next to SASL in the docs or the config uses 9096
    for line in (deploy_doc + SAMCONFIG.read_text()).splitlines():
        if "SASL" in line:
            assert set(re.findall(r"[\w.-]+:(\d{4})\b", line)) <= {"9096"}, line
