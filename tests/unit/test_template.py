"""template.yaml, samconfig.toml and docs/deploy.md, parsed: security posture, handler paths, the
stream error handling they promise, and deploy settings that must not drift apart."""

from __future__ import annotations

import fnmatch
import gzip
import json
import os
import re
import shlex
import subprocess
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from fraud_core.artifact_stores import LocalModelStore, S3ModelStore, store_from_uri
from fraud_core.event_log import (
    LABELS,
    SCORING,
    EventLog,
    Logs,
    encode,
    label_rows,
    object_key,
    scoring_row,
)
from fraud_core.labels import Label
from fraud_core.manifest import ONNX_FILE, ModelManifest, Thresholds
from fraud_core.monitoring.job import MONITORING, MonitorConfig, emf_values, write_report
from fraud_core.monitoring.metrics import K
from fraud_core.registry import ModelRegistry
from fraud_core.scorer import ScoreResult
from fraud_core.settings import Settings
from fraud_core.stream.ports import BatchReport
from tests.cfn import PSEUDO_PARAMETERS, TEMPLATE, load_template, resolve
from tests.events import lambda_context, load_event

ROOT = Path(__file__).resolve().parents[2]
SAMCONFIG = ROOT / "samconfig.toml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
STACK_PREFIX = "fraud-detection-"
PROBES = {"/health", "/ready"}
EMPTY = '""'
MSK_PORTS = {"9092": "plaintext", "9094": "TLS", "9096": "SASL/SCRAM", "9098": "IAM access control"}
# MSK's listener for each security protocol the result publisher can speak (unset = PLAINTEXT).
PUBLISHER_PORTS = {"PLAINTEXT": "9092", "SSL": "9094", "SASL_SSL": "9096"}
STACK = "fraud-detection-test"
CLUSTER_UUID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789-7"
# Another region and account than the pseudo parameters: topic and group ARNs must come from the
# cluster ARN itself.
CLUSTER = f"arn:aws:kafka:eu-west-1:210987654321:cluster/payments/{CLUSTER_UUID}"
MSK = {"KafkaMode": "msk", "MskClusterArn": CLUSTER}
SCRAM_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_fraud-AbCdEf"
LABELS_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:fraud-labels-key-AbCdEf"
# Every optional feature on at once: both secrets, VPC, Kafka publishing, both API keys.
EVERYTHING = {
    "RedisAuthSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:fraud-redis-AbCdEf",
    "KafkaSaslScramSecretArn": SCRAM_SECRET,
    "KafkaBootstrapServers": "b-1.example:9096,b-2.example:9096",
    "SubnetIds": "subnet-a,subnet-b",
    "SecurityGroupIds": "sg-a",
    "ApiKeyParameter": "/fraud/api-key",
    "LabelsApiKeyParameter": LABELS_SECRET,
    "EnableIamAuth": "true",
}
# What CloudWatch Logs accepts as RetentionInDays.
RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731]
RETENTION_DAYS += [1096, 1827, 2192, 2557, 2922, 3288, 3653]
# Access-log fields someone investigating a request needs, and the variable each one logs.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "latency": "$context.responseLatency",
    "integrationError": "$context.integrationErrorMessage",
}
# EC2's Describe* actions have no resource-level permissions; kms:Decrypt is limited by conditions.
WILDCARD_ACTIONS = {
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "kms:Decrypt",
}
# Variables the hardening passes to the functions (the publisher's SASL login, the labels key).
HARDENING_SETTINGS = {
    "FRAUD_KAFKA_SECURITY_PROTOCOL",
    "FRAUD_KAFKA_SASL_MECHANISM",
    "FRAUD_KAFKA_SASL_SECRET_ARN",
    "FRAUD_LABELS_API_KEY_SSM_PARAMETER",
}
# Variables of the scoring and label logs and of the monitor.
MONITOR_SETTINGS = {
    "FRAUD_LOG_URI",
    "FRAUD_LABEL_DELAY_DAYS",
    "FRAUD_MONITOR_WINDOW_HOURS",
    "FRAUD_MONITOR_ALPHA",
}


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
    """The intrinsic functions that Conditions and Rules of this template use."""
    return resolve(node, params, conditions)


def stack_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """Parameter values of a new stack named STACK, with the pseudo parameters."""
    return {**PSEUDO_PARAMETERS, "AWS::StackName": STACK, **parameter_values(template, overrides)}


def function_config(template: dict[str, Any], name: str, overrides: dict[str, str]) -> dict[str, Any]:
    """A function's properties as deployed with these overrides: Globals merged in (SAM merges
    the environment variables), intrinsic functions resolved."""
    defaults = template["Globals"]["Function"]
    props = template["Resources"][name]["Properties"]
    variables = {**defaults["Environment"]["Variables"], **props.get("Environment", {}).get("Variables", {})}
    merged = {**defaults, **props, "Environment": {"Variables": variables}}
    return dict(resolve(merged, stack_values(template, overrides), template["Conditions"]))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants(config: dict[str, Any]) -> dict[str, set[str]]:
    """Resources each action is allowed on by a resolved function's own policy statements (a
    resource of the stack, such as the model bucket, as its JSON)."""
    allowed: dict[str, set[str]] = defaultdict(set)
    for statement in statements(config["Policies"]):
        arns = {r if isinstance(r, str) else json.dumps(r) for r in as_list(statement["Resource"])}
        for action in as_list(statement["Action"]):
            allowed[action] |= arns
    return dict(allowed)


def references(node: Any) -> set[str]:
    """Logical ids that ``node`` refers to (Ref, Fn::GetAtt, names inside Fn::Sub)."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0])
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else value
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)} - set(variables)
                found |= references(variables)
            elif key == "Fn::If":
                found |= references(value[1:])
            else:
                found |= references(value)
    return found


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


def topic_arn(topic: str) -> str:
    return f"arn:aws:kafka:eu-west-1:210987654321:topic/payments/{CLUSTER_UUID}/{topic}"


def group_arn(group: str) -> str:
    return f"arn:aws:kafka:eu-west-1:210987654321:group/payments/{CLUSTER_UUID}/{group}"


def published_topics() -> set[str]:
    """The topics the stream function publishes to by default (the template does not set them)."""
    fields = Settings.model_fields
    return {fields[name].default for name in ("scores_topic", "alerts_topic", "dlq_topic")}


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
    from starlette.routing import Mount

    mounts = {("GET", f"{r.path}/{{proxy+}}") for r in create_app().routes if isinstance(r, Mount)}
    assert mounts and mounts <= wired, "the vendored /docs assets are reachable through API Gateway"
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


# -- throttling, logs and concurrency --------------------------------------------------------------


def test_api_stage_throttles_every_route_with_parameters(template: dict[str, Any]) -> None:
    stage = template["Resources"]["HttpApiStage"]["Properties"]
    # GIVEN the stage's default route settings, which every route inherits
    throttle = stage["DefaultRouteSettings"]
    assert throttle["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert throttle["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    assert "RouteSettings" not in stage, "no route may loosen the stage's throttle"
    # THEN the defaults throttle well below the account's own limits (10,000 rps, burst 5,000),
    # and zero (which would refuse every request) is not accepted
    params = template["Parameters"]
    rate, burst = params["ApiThrottlingRateLimit"], params["ApiThrottlingBurstLimit"]
    assert 0 < int(rate["Default"]) <= int(burst["Default"]) <= 1_000
    assert rate["MinValue"] >= 1 and burst["MinValue"] >= 1
    assert rate["MaxValue"] <= 10_000 and burst["MaxValue"] <= 5_000


def test_api_access_log_is_json_in_its_own_group_with_the_retention(template: dict[str, Any]) -> None:
    settings = template["Resources"]["HttpApiStage"]["Properties"]["AccessLogSettings"]
    # GIVEN the stage's access log destination
    group = template["Resources"][settings["DestinationArn"]["Fn::GetAtt"][0]]
    assert settings["DestinationArn"]["Fn::GetAtt"][1] == "Arn"
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # THEN each line is a JSON object with the request's facts, from $context variables only, and
    # without the raw path (it carries transaction ids) or anything the caller sent
    fields = json.loads(settings["Format"])
    assert ACCESS_LOG_FIELDS.items() <= fields.items()
    assert all(variable.startswith("$context.") for variable in fields.values())
    assert "$context.path" not in fields.values()


def test_log_retention_is_a_parameter_cloudwatch_accepts(template: dict[str, Any]) -> None:
    spec = template["Parameters"]["LogRetentionDays"]
    assert spec["Default"] == "30"
    assert [int(days) for days in spec["AllowedValues"]] == RETENTION_DAYS


def test_every_log_group_keeps_logs_for_the_retention(template: dict[str, Any]) -> None:
    groups = resources(template, "AWS::Logs::LogGroup")
    functions = resources(template, "AWS::Serverless::Function")
    projects = resources(template, "AWS::CodeBuild::Project")
    assert len(groups) == 1 + len(functions) + len(projects)
    for name, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        assert "DeletionPolicy" not in group, f"{name}: a retained, named group blocks a redeploy"


def test_every_function_writes_to_its_own_log_group(template: dict[str, Any]) -> None:
    groups = resources(template, "AWS::Logs::LogGroup")
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        props = fn["Properties"]
        # GIVEN a function named from the stack name alone
        function_name = props["FunctionName"]["Fn::Sub"]
        assert function_name.startswith("${AWS::StackName}-"), name
        assert references(props["FunctionName"]) <= {"AWS::StackName"}, name
        # THEN it logs to a group of the stack carrying Lambda's default name for it
        group = groups[props["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]
        assert group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/{function_name}"}, name


def test_resources_have_no_dependency_cycle(template: dict[str, Any]) -> None:
    # CloudFormation refuses a template whose resources depend on each other in a circle (a log
    # group named after its function's generated name, with the function logging to that group).
    names = set(template["Resources"])
    graph = {
        name: (references(resource.get("Properties", {})) | set(as_list(resource.get("DependsOn", []))))
        & names
        for name, resource in template["Resources"].items()
    }
    done: set[str] = set()
    while graph.keys() - done:
        ready = {name for name in graph.keys() - done if graph[name] <= done}
        assert ready, f"dependency cycle among {sorted(graph.keys() - done)}"
        done |= ready


@pytest.mark.parametrize(
    ("function", "parameter"),
    [("ApiFunction", "ApiReservedConcurrency"), ("StreamFunction", "StreamReservedConcurrency")],
)
def test_reserved_concurrency_is_a_parameter_and_unreserved_by_default(
    template: dict[str, Any], function: str, parameter: str
) -> None:
    spec = template["Parameters"][parameter]
    assert spec["Default"] == ""
    # GIVEN empty, 0 or a number of executions
    for value, reserved in (("", None), ("0", None), ("25", "25")):
        config = function_config(template, function, {parameter: value})
        # THEN only a positive number reserves (reserving 0 would stop the function)
        assert config.get("ReservedConcurrentExecutions") == reserved, value
    for value in ("", "0", "7", "250"):
        assert re.fullmatch(spec["AllowedPattern"], value), value
    for value in ("00", "-1", "x", "1.5"):
        assert not re.fullmatch(spec["AllowedPattern"], value), value


# -- least privilege -------------------------------------------------------------------------------


def test_kafka_grants_name_the_cluster_its_topics_and_groups(template: dict[str, Any]) -> None:
    # GIVEN the stream function of an MSK stack
    config = function_config(template, "StreamFunction", MSK)
    kafka = {action: arns for action, arns in grants(config).items() if action.startswith("kafka")}
    consumed = {topic_arn("transactions"), topic_arn("fraud-labels")}
    published = {topic_arn(topic) for topic in published_topics()}
    groups = {group_arn(f"{STACK}-transactions"), group_arn(f"{STACK}-labels")}
    # THEN every Kafka grant names this cluster, a consumed or published topic, or a mapping's group
    assert kafka == {
        "kafka:DescribeClusterV2": {CLUSTER},
        "kafka:GetBootstrapBrokers": {CLUSTER},
        "kafka-cluster:Connect": {CLUSTER},
        "kafka-cluster:DescribeClusterDynamicConfiguration": {CLUSTER},
        "kafka-cluster:WriteDataIdempotently": {CLUSTER},
        "kafka-cluster:ReadData": consumed,
        "kafka-cluster:WriteData": published,
        "kafka-cluster:DescribeTopic": consumed | published,
        "kafka-cluster:DescribeGroup": groups,
        "kafka-cluster:AlterGroup": groups,
    }
    # AND those groups are the ones the mappings join
    values = stack_values(template, MSK)
    joined = {
        group_arn(
            resolve(mapping["Properties"], values, template["Conditions"])[
                "AmazonManagedKafkaEventSourceConfig"
            ]["ConsumerGroupId"]
        )
        for mapping in (
            template["Resources"]["MskEventSource"],
            template["Resources"]["MskLabelsEventSource"],
        )
    }
    assert joined == groups


def test_kafka_grants_follow_the_topic_parameters(template: dict[str, Any]) -> None:
    config = function_config(template, "StreamFunction", {**MSK, "KafkaTopic": "card-tx", "LabelsTopic": ""})
    allowed = grants(config)
    assert allowed["kafka-cluster:ReadData"] == {topic_arn("card-tx")}
    assert allowed["kafka-cluster:AlterGroup"] == {group_arn(f"{STACK}-transactions")}
    assert not any(a.startswith("kafka") for a in grants(function_config(template, "StreamFunction", {})))


@pytest.mark.parametrize("mode", ["msk", "self-managed"])
def test_only_actions_without_resource_level_permissions_are_granted_on_every_resource(
    template: dict[str, Any], mode: str
) -> None:
    # GIVEN every optional feature switched on
    overrides = {**EVERYTHING, **MSK, "KafkaMode": mode}
    for name in resources(template, "AWS::Serverless::Function"):
        for statement in statements(function_config(template, name, overrides)["Policies"]):
            actions = as_list(statement["Action"])
            # THEN no action is a wildcard, and "*" is left to actions that cannot name a resource
            assert not [a for a in actions if "*" in a], (name, actions)
            if "*" in as_list(statement["Resource"]):
                assert set(actions) <= WILDCARD_ACTIONS, (name, actions)
            if "kms:Decrypt" in actions:
                assert statement["Condition"]["StringEquals"]["kms:EncryptionContext:SecretARN"], name


@pytest.mark.parametrize(
    ("overrides", "needed"),
    [
        ({}, False),
        ({"SubnetIds": "subnet-a", "SecurityGroupIds": "sg-a"}, True),
        (MSK, True),  # the MSK mappings' pollers use the function's role, VPC or not
    ],
)
def test_network_interface_grants_exactly_when_a_vpc_or_msk_needs_them(
    template: dict[str, Any], overrides: dict[str, str], needed: bool
) -> None:
    allowed = grants(function_config(template, "StreamFunction", overrides))
    ec2 = {action: arns for action, arns in allowed.items() if action.startswith("ec2:")}
    if not needed:
        assert ec2 == {}
        return
    assert ec2 == {
        "ec2:DescribeNetworkInterfaces": {"*"},
        "ec2:DescribeVpcs": {"*"},
        "ec2:DescribeSubnets": {"*"},
        "ec2:DescribeSecurityGroups": {"*"},
        "ec2:CreateNetworkInterface": {"arn:aws:ec2:us-east-1:123456789012:*"},
        "ec2:DeleteNetworkInterface": {"arn:aws:ec2:us-east-1:123456789012:*"},
    }


@pytest.mark.parametrize("mode", ["msk", "self-managed"])
def test_publisher_logs_in_with_the_consumers_scram_secret_over_tls(
    template: dict[str, Any], mode: str
) -> None:
    publishing = {**MSK, "KafkaMode": mode, "KafkaBootstrapServers": "b-1.example:9096"}
    # GIVEN a stack whose mappings consume with SASL/SCRAM
    config = function_config(
        template, "StreamFunction", {**publishing, "KafkaSaslScramSecretArn": SCRAM_SECRET}
    )
    variables = config["Environment"]["Variables"]
    # THEN the publisher logs in with the same secret, SCRAM-SHA-512 over TLS
    assert variables["FRAUD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert variables["FRAUD_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert variables["FRAUD_KAFKA_SASL_SECRET_ARN"] == SCRAM_SECRET
    # AND the function's role may read that secret and decrypt it through Secrets Manager
    assert grants(config)["secretsmanager:GetSecretValue"] == {SCRAM_SECRET}
    decrypts = [s for s in statements(config["Policies"]) if s["Action"] == "kms:Decrypt"]
    assert [s["Condition"]["StringEquals"]["kms:EncryptionContext:SecretARN"] for s in decrypts] == [
        SCRAM_SECRET
    ]
    # AND without a secret the publisher gets no SASL settings (PLAINTEXT)
    plain = function_config(template, "StreamFunction", publishing)["Environment"]["Variables"]
    assert not [name for name in plain if name.startswith(("FRAUD_KAFKA_SECURITY", "FRAUD_KAFKA_SASL"))]


def test_prod_publishes_over_sasl_scram(
    template: dict[str, Any], environments: dict[str, dict[str, Any]]
) -> None:
    prod = environments["prod"]["overrides"]
    variables = function_config(template, "StreamFunction", prod)["Environment"]["Variables"]
    assert variables["FRAUD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert variables["FRAUD_KAFKA_SASL_SECRET_ARN"] == prod["KafkaSaslScramSecretArn"]
    assert ports(prod["KafkaBootstrapServers"].split(",")) == {"9096"}


@pytest.mark.parametrize(
    ("key", "ssm", "secret"),
    [("", False, False), ("/fraud/labels-api-key", True, False), (LABELS_SECRET, False, True)],
)
def test_labels_key_reaches_the_api_and_is_readable_only_when_set(
    template: dict[str, Any], key: str, ssm: bool, secret: bool
) -> None:
    spec = template["Parameters"]["LabelsApiKeyParameter"]
    assert spec["Default"] == ""
    assert re.fullmatch(spec["AllowedPattern"], key)
    # GIVEN an IAM-authorized API with or without a labels key
    config = function_config(template, "ApiFunction", {"LabelsApiKeyParameter": key, "EnableIamAuth": "true"})
    # THEN the app learns where the key is, and its role may read that one key only
    assert config["Environment"]["Variables"].get("FRAUD_LABELS_API_KEY_SSM_PARAMETER") == (key or None)
    allowed = grants(config)
    parameter = f"arn:aws:ssm:us-east-1:123456789012:parameter{key}"
    assert allowed.get("ssm:GetParameter", set()) == ({parameter} if ssm else set())
    assert allowed.get("secretsmanager:GetSecretValue", set()) == ({key} if secret else set())
    stream = grants(function_config(template, "StreamFunction", {"LabelsApiKeyParameter": key}))
    assert not {key, parameter} & set().union(*stream.values())


def test_labels_key_accepts_only_ssm_names_and_secret_arns(template: dict[str, Any]) -> None:
    pattern = template["Parameters"]["LabelsApiKeyParameter"]["AllowedPattern"]
    for value in ("fraud/labels", "arn:aws:ssm:us-east-1:123456789012:parameter/fraud/labels", "/a b"):
        assert not re.fullmatch(pattern, value), value


def test_labels_key_must_differ_from_the_api_key(template: dict[str, Any]) -> None:
    same = parameter_values(
        template, {"ApiKeyParameter": "/fraud/key", "LabelsApiKeyParameter": "/fraud/key"}
    )
    assert [d for d in failed_rules(template, same) if "LabelsApiKeyParameter" in d]
    separate = parameter_values(
        template, {"ApiKeyParameter": "/fraud/key", "LabelsApiKeyParameter": "/fraud/labels-key"}
    )
    assert failed_rules(template, separate) == []


def test_every_variable_the_template_sets_is_read_by_the_settings(template: dict[str, Any]) -> None:
    # Settings ignores unknown FRAUD_* variables, so a misspelt name would silently do nothing.
    everything = {**EVERYTHING, **MSK}
    functions = resources(template, "AWS::Serverless::Function")
    config = {name: function_config(template, name, everything) for name in functions}
    variables = {v for c in config.values() for v in c["Environment"]["Variables"] if v.startswith("FRAUD_")}
    assert variables >= HARDENING_SETTINGS | MONITOR_SETTINGS
    unread = {v for v in variables if v.removeprefix("FRAUD_").lower() not in Settings.model_fields}
    assert unread == set()


# -- monitoring: the log bucket, the monitor, alarms, dashboard and Athena ------------------------


def test_log_bucket_is_private_encrypted_tls_only_and_expires_the_logs(template: dict[str, Any]) -> None:
    resource = template["Resources"]["LogBucket"]
    bucket = resource["Properties"]
    # GIVEN the bucket of the scoring and label logs (card and terminal ids)
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    policy = template["Resources"]["LogBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "LogBucket"}
    statements = policy["PolicyDocument"]["Statement"]
    assert [s["Sid"] for s in statements if s["Effect"] == "Deny"] == ["DenyInsecureTransport"]
    assert statements[0]["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    assert statements[0]["Resource"] == [
        {"Fn::GetAtt": ["LogBucket", "Arn"]},
        {"Fn::Sub": "${LogBucket.Arn}/*"},
    ]
    assert not [s for s in statements if s["Effect"] == "Allow"]
    # THEN both logs and the reports expire after the parameter's days, which cover the monitor's
    # lookback plus the label delay
    expiry = {
        r["Prefix"]: r["ExpirationInDays"] for r in bucket["LifecycleConfiguration"]["Rules"] if "Prefix" in r
    }
    for prefix in (SCORING, LABELS, MONITORING):
        assert expiry[f"{prefix}/"] == {"Ref": "EventLogRetentionDays"}, prefix
    spec = template["Parameters"]["EventLogRetentionDays"]
    config = MonitorConfig()
    assert config.lookback_days is not None
    assert spec["MinValue"] >= config.lookback_days + int(template["Parameters"]["LabelDelayDays"]["Default"])


@pytest.mark.parametrize("name", ["ApiFunction", "StreamFunction", "MonitorFunction"])
def test_every_function_logs_to_the_root_of_the_log_bucket(template: dict[str, Any], name: str) -> None:
    # Lambda's file system is read-only: the settings' default (a local directory) cannot work there.
    uri = function_config(template, name, {})["Environment"]["Variables"]["FRAUD_LOG_URI"]
    assert uri == "s3://${LogBucket}"
    store = store_from_uri(uri.replace("${LogBucket}", "log-bucket"))
    assert isinstance(store, S3ModelStore)
    assert (store.bucket, store.prefix) == ("log-bucket", ""), (
        "the IAM grants name keys from the bucket's root"
    )


class RecordingStore:
    """A blob store that remembers which prefixes were listed and which keys were written."""

    uri = "memory://"

    def __init__(self) -> None:
        self.listed: list[str] = []
        self.written: list[str] = []

    def read(self, key: str) -> bytes:
        raise KeyError(key)

    def write(self, key: str, data: bytes) -> None:
        self.written.append(key)

    def list_dirs(self, prefix: str) -> list[str]:
        return []

    def list_keys(self, prefix: str) -> list[str]:
        self.listed.append(prefix)
        return []


def log_bucket_grants(config: dict[str, Any]) -> dict[str, set[str]]:
    """Object-key patterns each action is allowed on inside the log bucket ("" = the bucket)."""
    arn = "${LogBucket.Arn}"
    allowed: dict[str, set[str]] = defaultdict(set)
    for action, resources_ in grants(config).items():
        for resource in resources_:
            if resource.startswith(arn + "/"):
                allowed[action].add(resource.removeprefix(arn + "/"))
            elif resource == json.dumps({"Fn::GetAtt": ["LogBucket", "Arn"]}):
                allowed[action].add("")
    return dict(allowed)


def allowed_by(key: str, patterns: set[str]) -> bool:
    # IAM's `*` matches any characters, "/" included, as fnmatch's does.
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


@pytest.mark.parametrize("name", ["ApiFunction", "StreamFunction"])
def test_scoring_functions_may_only_write_both_logs(template: dict[str, Any], name: str) -> None:
    allowed = log_bucket_grants(function_config(template, name, {**EVERYTHING, **MSK}))
    # GIVEN the keys fraud_core.event_log writes for a batch or a request
    scored = object_key(SCORING, 1_795_993_796.0, "batch-1")
    labelled = object_key(LABELS, 1_795_993_796.0, "http-1")
    # THEN the function may write exactly those prefixes, and read or list nothing of the logs
    assert set(allowed) == {"s3:PutObject"}
    assert allowed["s3:PutObject"] == {f"{SCORING}/*", f"{LABELS}/*"}
    assert allowed_by(scored, allowed["s3:PutObject"]) and allowed_by(labelled, allowed["s3:PutObject"])


def test_monitor_reads_both_logs_and_writes_only_its_reports(template: dict[str, Any]) -> None:
    config = function_config(template, "MonitorFunction", {**EVERYTHING, **MSK})
    allowed = log_bucket_grants(config)
    # GIVEN what the monitor job lists, reads and writes
    store = RecordingStore()
    logs = Logs(EventLog(store, SCORING), EventLog(store, LABELS))
    day = date(2026, 11, 29)
    logs.scoring.keys(first=day, last=day)
    logs.labels.keys(first=day, last=day)
    report_key = write_report(logs, {"generated_at": "2026-11-29T23:00:00+00:00"})
    # THEN it may list and read those prefixes (S3ModelStore lists PREFIX + "/") ...
    assert set(allowed) == {"s3:GetObject", "s3:ListBucket", "s3:PutObject"}
    assert allowed["s3:GetObject"] == {f"{SCORING}/*", f"{LABELS}/*"}
    listing = next(
        s
        for s in statements(config["Policies"])
        if s["Action"] == "s3:ListBucket" and s["Resource"] == {"Fn::GetAtt": ["LogBucket", "Arn"]}
    )
    prefixes = set(listing["Condition"]["StringLike"]["s3:prefix"])
    assert len(store.listed) == 2 and all(allowed_by(prefix + "/", prefixes) for prefix in store.listed)
    for kind in (SCORING, LABELS):
        assert allowed_by(object_key(kind, 1_795_993_796.0, "x"), allowed["s3:GetObject"]), kind
    # ... and write its report, and nothing else
    assert store.written == [report_key]
    assert allowed["s3:PutObject"] == {f"{MONITORING}/*"}
    assert allowed_by(report_key, allowed["s3:PutObject"])
    assert not allowed_by(object_key(SCORING, 0.0, "x"), allowed["s3:PutObject"])
    # AND it reads the model registry like the other functions, and no secret
    assert {"${ModelBucket.Arn}/models/*"} <= grants(config)["s3:GetObject"]
    assert not {a for a in grants(config) if a.startswith(("secretsmanager:", "ssm:", "kafka", "sns:"))}


def test_monitor_runs_hourly_with_settings_the_job_accepts(template: dict[str, Any]) -> None:
    config = function_config(template, "MonitorFunction", {})
    # GIVEN the scheduled monitor function, from the layer like the other functions
    assert config["Handler"] == "fraud_monitor.handler.lambda_handler"
    assert config["CodeUri"] == "functions/monitor/"
    assert config["Layers"] == [{"Ref": "FraudCoreLayer"}]
    assert 60 <= config["Timeout"] <= 900 and config["MemorySize"] >= 1024
    assert config["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    (event,) = config["Events"].values()
    assert (event["Type"], event["Properties"]["Schedule"]) == ("Schedule", "rate(1 hour)")
    sample = load_event("eventbridge-monitor-schedule.json")
    assert (sample["source"], sample["detail-type"]) == ("aws.events", "Scheduled Event")
    # WHEN the settings read its variables with the template's defaults
    variables = config["Environment"]["Variables"]
    monitor = {"FRAUD_LABEL_DELAY_DAYS": "LabelDelayDays", "FRAUD_MONITOR_WINDOW_HOURS": "MonitorWindowHours"}
    monitor["FRAUD_MONITOR_ALPHA"] = "MonitorAlpha"
    fields = {v.removeprefix("FRAUD_").lower(): variables[v] for v in monitor}
    # THEN they are the settings' own defaults, and every value a parameter allows is valid
    assert Settings(**fields).model_dump(include=set(fields)) == {
        name: Settings.model_fields[name].default for name in fields
    }
    for variable, parameter in monitor.items():
        spec = template["Parameters"][parameter]
        field = variable.removeprefix("FRAUD_").lower()
        for bound in (spec["MinValue"], spec["MaxValue"]):
            Settings(**{field: bound})


MONITOR_METRICS = {
    "ScoredTransactions",
    "DriftDetected",
    "ScorePSI",
    "ScorePSIRatio",
    "MaxFeaturePSIRatio",
    "AlertRate",
    "AlertsPerDay",
    "RealisedCardPrecisionAt100",
    "RealisedCardPrecisionGap",
    "RealisedAveragePrecision",
    "RealisedAlertPrecision",
    "LabelCoverage",
    "LogProblems",
}
"""What the monitor function emits (dimensions ModelName and service)."""


def emf_names(output: str) -> set[str]:
    """Metric names of the EMF documents among a handler's stdout lines."""
    documents = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {
        metric["Name"]
        for document in documents
        if "_aws" in document
        for directive in document["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }


@pytest.fixture
def emitted_metrics(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> set[str]:
    """Names of the FraudDetection metrics the three functions emit, taken from their code."""
    # The monitor job's headline numbers, from a report where every one of them is measured
    report = {
        "windows": [
            {
                "transactions": 500,
                "tested": True,
                "drift": True,
                "score": {"psi": 0.3, "psi_threshold": 0.1},
                "features": {"amount": {"psi": 0.2, "psi_threshold": 0.1}},
                "alert_rate": {"observed": 0.02},
                "alerts_per_day": 10.0,
            }
        ],
        "realised": {
            f"card_precision_at_{K}": 0.3,
            f"test_card_precision_at_{K}": 0.32,
            "average_precision": 0.5,
            "alert_precision": 0.4,
            "label_coverage": 0.9,
        },
        "read": {"corrupt_objects": 0, "corrupt_rows": 0},
    }
    monitor = set(emf_values(report))
    assert monitor == MONITOR_METRICS
    # The stream handler's counters, around a batch that did everything once
    from fraud_stream import handler as stream_handler

    class OneBatch:
        def process(self, event: dict[str, object]) -> BatchReport:
            return BatchReport(received=3, scored=1, duplicates=1, dead_lettered=1, alerts=1, labels=1)

    monkeypatch.setattr(stream_handler, "get_processor", OneBatch)
    stream_handler.lambda_handler(load_event("kafka-msk.json"), lambda_context())
    stream = emf_names(capsys.readouterr().out)
    # The API's, through its observer
    from fraud_api.handler import PowertoolsObserver, metrics

    metrics.clear_metrics()
    observer = PowertoolsObserver()
    for status in (200, 404, 503):
        observer.request(route="/v1/score", status=status, latency_ms=1.0)
    observer.decisions(["approve", "review", "decline"])
    observer.degraded("redis")
    api = {m["Name"] for m in metrics.serialize_metric_set()["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    metrics.clear_metrics()
    return monitor | stream | api


def alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its own, or those of its metric-math query."""
    if "MetricName" in alarm:
        return [{key: alarm[key] for key in ("Namespace", "MetricName", "Dimensions")}]
    return [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]


def dimensions(metric: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}


ALARMS = {
    "DriftAlarm": {"DriftDetected"},
    "RealisedPrecisionAlarm": {"RealisedCardPrecisionAt100"},
    "RealisedPrecisionDropAlarm": {"RealisedCardPrecisionGap"},
    "DeadLetterRateAlarm": {"DeadLettered", "Received"},
    "ApiErrorRateAlarm": {"Errors", "Invocations"},
    "StreamErrorRateAlarm": {"Errors", "Invocations"},
    "MonitorErrorsAlarm": {"Errors"},
    "MonitorNotRunningAlarm": {"Invocations"},
    "RetrainFailedAlarm": {"FailedBuilds"},
}


def test_alarms_watch_metrics_the_functions_emit_and_notify_the_topic(
    template: dict[str, Any], emitted_metrics: set[str]
) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    powertools = template["Globals"]["Function"]["Environment"]["Variables"]
    functions = set(resources(template, "AWS::Serverless::Function"))
    projects = set(resources(template, "AWS::CodeBuild::Project"))
    assert set(alarms) == set(ALARMS)
    failing: set[str] = set()
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        # GIVEN each alarm's metrics
        read = alarm_metrics(props)
        assert {m["MetricName"] for m in read} == ALARMS[name], name
        for metric in read:
            dims = dimensions(metric)
            if metric["Namespace"] == "AWS/Lambda":
                # THEN Lambda's metrics are of one of the stack's functions
                assert set(dims) == {"FunctionName"}, name
                assert dims["FunctionName"]["Ref"] in functions, name
                if metric["MetricName"] == "Errors":
                    failing.add(dims["FunctionName"]["Ref"])
                continue
            if metric["Namespace"] == "AWS/CodeBuild":
                # CodeBuild's are of one of the stack's projects
                assert set(dims) == {"ProjectName"}, name
                assert dims["ProjectName"]["Ref"] in projects, name
                failing.add(dims["ProjectName"]["Ref"])
                continue
            # AND the application's are named, namespaced and dimensioned as Powertools emits them
            assert metric["Namespace"] == powertools["POWERTOOLS_METRICS_NAMESPACE"], name
            assert metric["MetricName"] in emitted_metrics, name
            expected = {"service": powertools["POWERTOOLS_SERVICE_NAME"]}
            if metric["MetricName"] in MONITOR_METRICS:
                expected["ModelName"] = {"Ref": "ModelName"}
            assert dims == expected, name
        # AND a metric-math alarm returns one expression over its own queries
        if "Metrics" in props:
            returned = [q for q in props["Metrics"] if q["ReturnData"]]
            assert len(returned) == 1 and "Expression" in returned[0], name
            queries = {q["Id"] for q in props["Metrics"]} - {returned[0]["Id"]}
            assert set(re.findall(r"\b[a-z]\w*\b", returned[0]["Expression"])) == queries, name
        assert props["AlarmActions"] == props["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert props["TreatMissingData"] in {"notBreaching", "breaching"}, name
    # AND every function's and build project's failures page someone
    assert failing == functions | projects


def test_alarm_thresholds(template: dict[str, Any]) -> None:
    alarms = {name: a["Properties"] for name, a in resources(template, "AWS::CloudWatch::Alarm").items()}
    drift = alarms["DriftAlarm"]
    assert (drift["ComparisonOperator"], drift["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    realised = alarms["RealisedPrecisionAlarm"]
    assert realised["ComparisonOperator"] == "LessThanThreshold"
    assert realised["Threshold"] == {"Ref": "MinRealisedCardPrecision"}
    assert realised["TreatMissingData"] == "notBreaching", "no label-complete day yet is not a failure"
    spec = template["Parameters"]["MinRealisedCardPrecision"]
    assert 0 <= spec["MinValue"] <= float(spec["Default"]) <= spec["MaxValue"] <= 1
    dead_letters = alarms["DeadLetterRateAlarm"]
    rate = next(q for q in dead_letters["Metrics"] if q["ReturnData"])
    assert "dead / received" in rate["Expression"]
    assert (dead_letters["ComparisonOperator"], dead_letters["Threshold"]) == ("GreaterThanThreshold", 0.01)
    assert {q["MetricStat"]["Period"] for q in dead_letters["Metrics"] if "MetricStat" in q} == {300}
    # An hour without a monitor run is missing data: that must page, not read as fine
    not_running = alarms["MonitorNotRunningAlarm"]
    assert not_running["TreatMissingData"] == "breaching"
    assert not_running["ComparisonOperator"] == "LessThanThreshold"
    assert not_running["Period"] * not_running["EvaluationPeriods"] >= 2 * 3600


@pytest.mark.parametrize(("email", "subscribed"), [("", False), ("oncall@example.com", True)])
def test_alarm_email_is_subscribed_only_when_given(
    template: dict[str, Any], email: str, subscribed: bool
) -> None:
    assert re.fullmatch(template["Parameters"]["AlarmEmail"]["AllowedPattern"], email)
    subscription = template["Resources"]["AlarmEmailSubscription"]
    params = parameter_values(template, {"AlarmEmail": email})
    conditions = template["Conditions"]
    assert evaluate(conditions[subscription["Condition"]], params, conditions) is subscribed
    assert subscription["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}


def dashboard_body(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """The dashboard JSON as CloudFormation would send it: parameters substituted, and each
    remaining ${Resource} or ${Resource.Attribute} replaced by a stand-in name."""
    body = resolve(
        template["Resources"]["Dashboard"]["Properties"]["DashboardBody"],
        stack_values(template, overrides),
        template["Conditions"],
    )
    assert isinstance(body, str)
    left = set(re.findall(r"\$\{([^}]+)\}", body))
    assert {ref.split(".")[0] for ref in left} <= set(template["Resources"]), left
    return dict(json.loads(re.sub(r"\$\{([^}]+)\}", r"stand-in:\1", body)))


def widget_metrics(widget: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric, dimensions) of a metric widget's rows; expressions left out."""
    rows = []
    for row in widget["properties"]["metrics"]:
        fields = [item for item in row if not isinstance(item, dict)]
        if fields:
            namespace, metric, *pairs = fields
            rows.append((namespace, metric, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return rows


def test_dashboard_is_valid_json_showing_the_monitor_stream_and_api(
    template: dict[str, Any], environments: dict[str, dict[str, Any]], emitted_metrics: set[str]
) -> None:
    powertools = template["Globals"]["Function"]["Environment"]["Variables"]
    alarms = set(resources(template, "AWS::CloudWatch::Alarm"))
    functions = set(resources(template, "AWS::Serverless::Function"))
    for env, settings in {"template defaults": {"overrides": {}}, **environments}.items():
        # GIVEN the dashboard body of each environment
        body = dashboard_body(template, settings["overrides"])
        values = stack_values(template, settings["overrides"])
        shown: set[str] = set()
        for widget in body["widgets"]:
            assert widget["x"] + widget["width"] <= 24, env
            if widget["type"] == "alarm":
                # THEN the alarm widget lists every alarm of the stack
                assert set(widget["properties"]["alarms"]) == {f"stand-in:{a}.Arn" for a in alarms}, env
            if widget["type"] != "metric":
                continue
            assert widget["properties"]["region"] == values["AWS::Region"], env
            for namespace, metric, dims in widget_metrics(widget):
                shown.add(metric)
                if namespace == "AWS/Lambda":
                    assert dims["FunctionName"].removeprefix("stand-in:") in functions, env
                    continue
                # AND every application metric is one the code emits, with its exact dimensions
                assert namespace == powertools["POWERTOOLS_METRICS_NAMESPACE"], env
                assert metric in emitted_metrics, (env, metric)
                expected = {"service": powertools["POWERTOOLS_SERVICE_NAME"]}
                if metric in MONITOR_METRICS:
                    expected["ModelName"] = values["ModelName"]
                assert dims == expected, (env, metric)
        assert MONITOR_METRICS - {"ScorePSI"} <= shown, env
        assert {"Received", "Scored", "DeadLettered", "FailedRecords", "Requests", "Status5xx"} <= shown, env


def json_view(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the log stores it (gzip NDJSON), read back."""
    return dict(json.loads(gzip.decompress(encode([row]))))


def hive_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "double"
    if isinstance(value, str):
        return "string"
    assert isinstance(value, dict) and value, value
    assert all(isinstance(k, str) and isinstance(v, float) for k, v in value.items()), value
    return "map<string,double>"


def logged_rows() -> dict[str, tuple[str, dict[str, Any]]]:
    """Table resource → (log prefix, a row as fraud_core.event_log writes it)."""
    result = ScoreResult(
        transaction_id="t_1",
        card_id="c_1",
        fraud_score=0.42,
        decision="review",
        reasons=(),
        model_version="20261129T000000Z",
    )
    scored = scoring_row(
        result,
        event_time=1_795_990_000.0,
        scored_at=1_795_993_796.5,
        shape="simulated",
        features={"TX_AMOUNT": 12.5, "customer_id_nb_tx_1day_window": 3.0},
        extra={"terminal_id": "term_9"},
    )
    label = Label(transaction_id="t_1", epoch=1_795_990_000, is_fraud=True, terminal_id="term_9")
    labelled = label_rows([label], author="api:caller", received_at=1_795_993_900.25)[0]
    return {"ScoringLogTable": (SCORING, scored), "LabelLogTable": (LABELS, labelled)}


@pytest.mark.parametrize("table", ["ScoringLogTable", "LabelLogTable"])
def test_glue_tables_read_the_rows_the_functions_log(template: dict[str, Any], table: str) -> None:
    prefix, row = logged_rows()[table]
    stored = json_view(row)
    values = stack_values(template, {})
    spec = resolve(template["Resources"][table]["Properties"], values, template["Conditions"])
    table_input = spec["TableInput"]
    storage = table_input["StorageDescriptor"]
    assert spec["DatabaseName"] == {"Ref": "LogDatabase"}
    # GIVEN a row as the log writes it
    columns = {c["Name"]: c["Type"] for c in storage["Columns"]}
    # THEN the table has its keys as columns, in order, with the types of their JSON values
    assert list(columns) == list(stored)
    assert {name: hive_type(value) for name, value in stored.items()} == columns
    # AND the SerDe reads gzip NDJSON without lowercasing the features' names (the row's own
    # keys are lowercase already), skipping a corrupt line as the monitor does
    assert storage["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert storage["SerdeInfo"]["Parameters"] == {
        "case.insensitive": "FALSE",
        "ignore.malformed.json": "TRUE",
    }
    assert all(key == key.lower() for key in stored)
    assert storage["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"
    assert table_input["Parameters"]["compressionType"] == "gzip"
    assert table_input["TableType"] == "EXTERNAL_TABLE"
    # AND the projected partitions are the object keys the log writes
    key = object_key(prefix, row.get("scored_at", row.get("received_at")), "batch")
    partition = re.fullmatch(rf"{prefix}/dt=([^/]+)/hour=([^/]+)/batch\.jsonl\.gz", key)
    assert partition, key
    dt, hour = partition.groups()
    assert [p["Name"] for p in table_input["PartitionKeys"]] == ["dt", "hour"]
    assert all(p["Type"] == "string" for p in table_input["PartitionKeys"])
    params = table_input["Parameters"]
    location = params["storage.location.template"].replace("${dt}", dt).replace("${hour}", hour)
    assert f"s3://${{LogBucket}}/{key}".startswith(location)
    assert storage["Location"] == f"s3://${{LogBucket}}/{prefix}/"
    assert params["projection.enabled"] == "true"
    assert (params["projection.dt.type"], params["projection.dt.format"]) == ("date", "yyyy-MM-dd")
    assert datetime.strptime(dt, "%Y-%m-%d").strftime("%Y-%m-%d") == dt
    assert params["projection.dt.range"] == f"NOW-{values['EventLogRetentionDays']}DAYS,NOW"
    assert (params["projection.hour.type"], params["projection.hour.range"]) == ("integer", "0,23")
    assert params["projection.hour.digits"] == str(len(hour))


def test_athena_names_are_valid_and_results_stay_in_the_log_bucket(template: dict[str, Any]) -> None:
    values = stack_values(template, {})
    database = resolve(template["Resources"]["LogDatabase"]["Properties"], values, template["Conditions"])
    assert re.fullmatch(r"[a-z0-9_]+", database["DatabaseInput"]["Name"])
    assert database["DatabaseInput"]["Name"] == STACK.replace("-", "_") + "_logs"
    workgroup = template["Resources"]["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]
    assert workgroup["EnforceWorkGroupConfiguration"] is True
    results = workgroup["ResultConfiguration"]
    assert results["OutputLocation"] == {"Fn::Sub": "s3://${LogBucket}/athena-results/"}
    assert results["EncryptionConfiguration"]["EncryptionOption"] == "SSE_S3"
    rules = template["Resources"]["LogBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {"athena-results/"} <= {r.get("Prefix") for r in rules}


def test_outputs_name_the_log_bucket_dashboard_and_glue_database(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["LogBucketName"]["Value"] == {"Ref": "LogBucket"}
    assert outputs["LogUri"]["Value"] == {"Fn::Sub": "s3://${LogBucket}"}
    assert outputs["DashboardName"]["Value"] == {"Ref": "Dashboard"}
    assert outputs["LogDatabaseName"]["Value"] == {"Ref": "LogDatabase"}
    assert outputs["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}


# -- retraining: the CodeBuild job, its role and its triggers --------------------------------------

RETRAIN_VARIABLES = {
    "FRAUD_REGISTRY_URI": "s3://${ModelBucket}/models",
    "FRAUD_MODEL_NAME": "creditcard-fraud",
    "FRAUD_LOG_URI": "s3://${LogBucket}",
    "FRAUD_LABEL_DELAY_DAYS": "7",
    "FRAUD_ACTOR": "codebuild",
}
"""The retraining job's environment with the template defaults (stack resources as ${Name})."""

FAKE_PYTHON = """#!/bin/sh
# Stands in for `python` in a simulated build: records its arguments, exits as told.
echo "$*" >> "$CALLS"
case "$*" in
  "-m fraud_training.retrain"*) exit "$RETRAIN_STATUS" ;;
  "-m fraud_training.registry gate"*) exit "$GATE_STATUS" ;;
esac
exit 0
"""


def retrain_project(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    props = template["Resources"]["RetrainProject"]["Properties"]
    return dict(resolve(props, stack_values(template, overrides), template["Conditions"]))


def buildspec(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """The inline buildspec as CodeBuild receives it with these parameter values."""
    spec = retrain_project(template, overrides)["Source"]["BuildSpec"]
    assert isinstance(spec, str) and "${" not in spec, spec
    return dict(yaml.safe_load(spec))


def run_build(spec: dict[str, Any], workdir: Path, *, retrain: int, gate: int) -> tuple[str, list[str]]:
    """Run a buildspec's commands the way CodeBuild does and return (build status, python calls).

    Phases in order, each command in `sh`; the first command that exits non-zero fails the build
    and skips the rest (buildspec 0.2, on-failure ABORT). `python` is FAKE_PYTHON: retrain exits
    with ``retrain``, the gate with ``gate``.
    """
    assert set(spec["phases"]) <= {"install", "build"}, "post_build would run even after a failed build"
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    calls = workdir / "calls"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "RETRAIN_STATUS": str(retrain),
        "GATE_STATUS": str(gate),
    }
    status = "SUCCEEDED"
    commands = [
        c for phase in ("install", "build") for c in spec["phases"].get(phase, {}).get("commands", [])
    ]
    for command in commands:
        result = subprocess.run(["/bin/sh", "-c", command], env=env, cwd=workdir, check=False, timeout=30)
        if result.returncode != 0:
            status = "FAILED"
            break
    return status, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize(
    ("retrain", "gate", "auto_promote", "expected"),
    [
        (0, 0, "false", "SUCCEEDED"),  # the challenger passed (and stays in shadow: no --apply)
        (0, 1, "false", "SUCCEEDED"),  # the gate refused: a normal outcome, in the audit log
        (0, 2, "false", "FAILED"),  # the gate could not decide (no challenger, unreadable logs)
        (2, 0, "false", "FAILED"),  # retrain failed: no gate on a stale challenger
        (0, 0, "true", "SUCCEEDED"),  # AutoPromote: the gate promotes what passes
        (0, 1, "true", "SUCCEEDED"),
        (0, 2, "true", "FAILED"),
    ],
)
def test_retrain_build_runs_retrain_then_the_gate_and_fails_only_on_errors(
    template: dict[str, Any], tmp_path: Path, retrain: int, gate: int, auto_promote: str, expected: str
) -> None:
    # GIVEN the buildspec of a stack retraining random forests, with or without AutoPromote
    spec = buildspec(template, {"RetrainModel": "rf", "AutoPromote": auto_promote})
    # WHEN the build runs and retrain and the gate exit with these statuses
    status, calls = run_build(spec, tmp_path, retrain=retrain, gate=gate)
    # THEN the package is installed with its training extra, retrain runs with the chosen model,
    # then (only if retrain succeeded) the gate, promoting exactly when AutoPromote says so
    install, *jobs = calls
    assert install.startswith("-m pip install") and install.endswith(".[training]")
    gate_call = "-m fraud_training.registry gate --metric cp" + (" --apply" if auto_promote == "true" else "")
    assert jobs == ["-m fraud_training.retrain --model rf --days 28"] + ([gate_call] if retrain == 0 else [])
    # AND the build fails on an error (exit 2) but not on a refusal (exit 1)
    assert status == expected


def test_retrain_build_uses_a_python_the_package_supports(template: dict[str, Any]) -> None:
    spec = buildspec(template, {})
    version = str(spec["phases"]["install"]["runtime-versions"]["python"])
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(part) for part in requires.removeprefix(">=").split("."))
    assert tuple(int(part) for part in version.split(".")) >= minimum
    # the default runs the template's default model, and the gate without --apply
    assert spec["phases"]["build"]["commands"][0] == "python -m fraud_training.retrain --model auto --days 28"
    assert "--apply" not in spec["phases"]["build"]["commands"][1]
    assert template["Parameters"]["AutoPromote"]["Default"] == "false"


def test_retrain_project_has_the_settings_of_the_functions(
    template: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = retrain_project(template, {})
    # GIVEN the job's environment
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    assert variables == RETRAIN_VARIABLES
    # THEN it reads the registry, the model and the logs the functions serve and log to
    functions = function_config(template, "MonitorFunction", {})["Environment"]["Variables"]
    for name in ("FRAUD_REGISTRY_URI", "FRAUD_MODEL_NAME", "FRAUD_LOG_URI", "FRAUD_LABEL_DELAY_DAYS"):
        assert variables[name] == functions[name], name
    # WHEN the training CLIs read them (Settings, and the registry's audit records)
    buckets = {"${ModelBucket}": "model-bucket", "${LogBucket}": "log-bucket"}
    for name, value in variables.items():
        for ref, bucket in buckets.items():
            value = value.replace(ref, bucket)
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.registry_uri, settings.model_name) == ("s3://model-bucket/models", "creditcard-fraud")
    assert (settings.log_uri, settings.label_delay_days) == ("s3://log-bucket", 7)
    registry = ModelRegistry(LocalModelStore(tmp_path), settings.model_name)
    record = json.loads((tmp_path / registry.record("gate", "v2")).read_text())
    # THEN every decision the build records says who made it
    assert record["by"] == "codebuild"
    # AND the job runs on a managed image, unprivileged, one build at a time, with a time limit
    environment = project["Environment"]
    assert environment["Image"].startswith("aws/codebuild/")
    assert environment["ComputeType"] == template["Parameters"]["RetrainComputeType"]["Default"]
    assert not environment.get("PrivilegedMode", False)
    assert project["ConcurrentBuildLimit"] == 1
    assert 15 < project["TimeoutInMinutes"] <= 480
    assert project["Artifacts"] == {"Type": "NO_ARTIFACTS"}


def test_retrain_source_is_the_zip_the_docs_upload_and_the_role_may_read(
    template: dict[str, Any], deploy_doc: str
) -> None:
    project = retrain_project(template, {})
    role = resolve(
        template["Resources"]["RetrainRole"]["Properties"], stack_values(template, {}), template["Conditions"]
    )
    # GIVEN the project's source: a zip in the model bucket
    assert project["Source"]["Type"] == "S3"
    assert project["Source"]["Location"] == "${ModelBucket}/retrain/source.zip"
    # THEN the output names the same object, and the role may read exactly that one
    uri = resolve(template["Outputs"]["RetrainSourceUri"]["Value"], stack_values(template, {}), {})
    assert uri == "s3://" + project["Source"]["Location"]
    allowed = grants(role)
    assert allowed["s3:GetObjectVersion"] == {"${ModelBucket.Arn}/retrain/source.zip"}
    assert "${ModelBucket.Arn}/retrain/source.zip" in allowed["s3:GetObject"]
    # AND the docs upload `git archive` of the repository to that output
    uploads = [c for c in shell_commands(doc_sections(deploy_doc)["Retraining"]) if "aws s3 cp" in c]
    assert uploads and all(c.startswith("git archive --format=zip HEAD | aws s3 cp - ") for c in uploads)
    assert all("OutputKey=='RetrainSourceUri'" in c for c in uploads)
    assert template["Outputs"]["RetrainProjectName"]["Value"] == {"Ref": "RetrainProject"}


@pytest.mark.parametrize(("prefix", "refused"), [("models", False), ("registry", False), ("retrain", True)])
def test_retrain_source_stays_outside_the_registry_the_job_writes(
    template: dict[str, Any], prefix: str, refused: bool
) -> None:
    spec = template["Parameters"]["RetrainSourceKey"]
    assert re.fullmatch(spec["AllowedPattern"], spec["Default"])
    for key in ("models/source.zip", "source.zip", "retrain/source.tar"):
        assert not re.fullmatch(spec["AllowedPattern"], key), key
    failed = failed_rules(template, parameter_values(template, {"ModelPrefix": prefix}))
    assert bool([d for d in failed if "RetrainSourceKey" in d]) == refused


class RecordingModelStore(LocalModelStore):
    """A local registry that remembers the keys it read, wrote and listed."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read_keys: list[str] = []
        self.written: list[str] = []
        self.listed: list[str] = []

    def read(self, key: str) -> bytes:
        self.read_keys.append(key)
        return super().read(key)

    def write(self, key: str, data: bytes) -> None:
        self.written.append(key)
        super().write(key, data)

    def list_dirs(self, prefix: str) -> list[str]:
        self.listed.append(prefix)
        return super().list_dirs(prefix)

    def list_keys(self, prefix: str) -> list[str]:
        self.listed.append(prefix)
        return super().list_keys(prefix)


def registry_manifest(version: str) -> ModelManifest:
    return ModelManifest(
        name="creditcard-fraud",
        version=version,
        created_at="2026-11-30T03:00:00+00:00",
        model_type="hgb",
        features=["a"],
        raw_scaling={},
        explain_baseline=[0.0],
        thresholds=Thresholds(review=0.1, decline=0.5),
    )


def bucket_grants(config: dict[str, Any], bucket: str) -> dict[str, set[str]]:
    """Object-key patterns each action is allowed on inside ``bucket`` ("" = the bucket itself)."""
    arn = f"${{{bucket}.Arn}}"
    allowed: dict[str, set[str]] = defaultdict(set)
    for action, resources_ in grants(config).items():
        for resource in resources_:
            if resource.startswith(arn + "/"):
                allowed[action].add(resource.removeprefix(arn + "/"))
            elif resource == json.dumps({"Fn::GetAtt": [bucket, "Arn"]}):
                allowed[action].add("")
    return dict(allowed)


def test_retrain_role_reads_the_logs_and_writes_only_its_models_registry_entries(
    template: dict[str, Any], tmp_path: Path
) -> None:
    role = resolve(
        template["Resources"]["RetrainRole"]["Properties"], stack_values(template, {}), template["Conditions"]
    )
    model, logs = bucket_grants(role, "ModelBucket"), bucket_grants(role, "LogBucket")
    # GIVEN what the job does to the registry: retrain reads the champion, publishes a version and
    # sets it as challenger; `gate --apply` records its decision, promotes and clears the challenger
    store = RecordingModelStore(tmp_path / "models")
    registry = ModelRegistry(store, "creditcard-fraud")
    registry.publish(registry_manifest("v1"), {ONNX_FILE: b"champion"})
    for recorded in (store.read_keys, store.written, store.listed):
        recorded.clear()
    _, champion = registry.current_manifest()
    registry.read_verified(champion, ONNX_FILE)
    registry.publish(registry_manifest("v2"), {ONNX_FILE: b"challenger"}, promote=False)
    registry.challenge("v2")
    registry.challenger()
    registry.record("gate", "v2", passed=True, champion="v1", why=[], metrics={})
    registry.promote("v2")
    registry.unchallenge()
    registry.history()
    registry.versions()
    # (the S3 keys: the registry's store has the ModelPrefix as its prefix)
    written = {f"models/{key}" for key in store.written}
    read = {f"models/{key}" for key in store.read_keys}
    assert {"models/creditcard-fraud/challenger.json", "models/creditcard-fraud/current.json"} <= written
    assert any(key.startswith("models/creditcard-fraud/audit/") for key in written)
    # THEN the role may write, read and list exactly that model's keys
    assert model["s3:PutObject"] == {"models/creditcard-fraud/*"}
    assert all(allowed_by(key, model["s3:PutObject"]) for key in written), written
    assert all(allowed_by(key, model["s3:GetObject"]) for key in read), read
    listing = next(
        s
        for s in statements(role["Policies"])
        if s["Action"] == "s3:ListBucket" and s["Resource"] == {"Fn::GetAtt": ["ModelBucket", "Arn"]}
    )
    prefixes = set(as_list(listing["Condition"]["StringLike"]["s3:prefix"]))
    assert all(allowed_by(f"models/{prefix}/", prefixes) for prefix in store.listed), store.listed
    # AND not another model's, nor its own source, and never delete
    for key in ("models/other-model/current.json", "retrain/source.zip", "models/current.json"):
        assert not allowed_by(key, model["s3:PutObject"]), key
    assert not [a for a in grants(role) if "Delete" in a]
    # AND it reads both logs (and lists only their prefixes) without writing them
    assert logs == {"s3:GetObject": {f"{SCORING}/*", f"{LABELS}/*"}, "s3:ListBucket": {""}}
    log_listing = next(
        s
        for s in statements(role["Policies"])
        if s["Action"] == "s3:ListBucket" and s["Resource"] == {"Fn::GetAtt": ["LogBucket", "Arn"]}
    )
    assert set(log_listing["Condition"]["StringLike"]["s3:prefix"]) == {f"{SCORING}/*", f"{LABELS}/*"}
    # AND no statement names every resource or every action
    for statement in statements(role["Policies"]):
        assert "*" not in as_list(statement["Resource"]), statement
        assert not [a for a in as_list(statement["Action"]) if "*" in a], statement
    # AND its build logs go to the stack's group only
    assert grants(role)["logs:PutLogEvents"] == {json.dumps({"Fn::GetAtt": ["RetrainLogGroup", "Arn"]})}
    project = template["Resources"]["RetrainProject"]["Properties"]
    assert project["LogsConfig"]["CloudWatchLogs"]["GroupName"] == {"Ref": "RetrainLogGroup"}
    assert project["ServiceRole"] == {"Fn::GetAtt": ["RetrainRole", "Arn"]}


def trusted_service(role: dict[str, Any]) -> str:
    """The one service a role's trust policy lets assume it, for this account only."""
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    return str(statement["Principal"]["Service"])


RETRAIN_RULES = ("RetrainScheduleRule", "RetrainOnDriftRule")


@pytest.mark.parametrize(("enabled", "state"), [("true", "ENABLED"), ("false", "DISABLED")])
def test_both_retrain_triggers_start_only_the_project(
    template: dict[str, Any], enabled: str, state: str
) -> None:
    resources_ = template["Resources"]
    values = stack_values(template, {"RetrainEnabled": enabled})
    for name in RETRAIN_RULES:
        rule = resolve(resources_[name]["Properties"], values, template["Conditions"])
        # GIVEN each trigger, enabled or not by RetrainEnabled
        assert rule["State"] == state, name
        # THEN its one target is the project, started with the events role
        assert rule["Targets"] == [
            {
                "Id": "retrain",
                "Arn": {"Fn::GetAtt": ["RetrainProject", "Arn"]},
                "RoleArn": {"Fn::GetAtt": ["RetrainEventsRole", "Arn"]},
            }
        ], name
    # AND that role may start this project's builds and nothing else
    events_role = resources_["RetrainEventsRole"]
    assert trusted_service(events_role) == "events.amazonaws.com"
    assert grants(events_role["Properties"]) == {
        "codebuild:StartBuild": {json.dumps({"Fn::GetAtt": ["RetrainProject", "Arn"]})}
    }
    assert trusted_service(resources_["RetrainRole"]) == "codebuild.amazonaws.com"


def test_schedule_rule_runs_weekly_by_default(template: dict[str, Any]) -> None:
    rule = template["Resources"]["RetrainScheduleRule"]["Properties"]
    assert rule["ScheduleExpression"] == {"Ref": "RetrainSchedule"}
    spec = template["Parameters"]["RetrainSchedule"]
    assert spec["Default"] == "cron(0 3 ? * MON *)"
    assert re.fullmatch(spec["AllowedPattern"], spec["Default"])
    assert re.fullmatch(spec["AllowedPattern"], "rate(7 days)")
    assert not re.fullmatch(spec["AllowedPattern"], "0 3 * * 1")


def event_matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge's matching for the pattern forms used here: nested fields, lists of exact values
    (an event array matches when any element does)."""
    for key, expected in pattern.items():
        if key not in event:
            return False
        if isinstance(expected, dict):
            if not isinstance(event[key], dict) or not event_matches(expected, event[key]):
                return False
        elif not set(as_list(event[key])) & set(expected):
            return False
    return True


def alarm_state_change(alarm_arn: str, value: str, previous: str) -> dict[str, Any]:
    """A CloudWatch "Alarm State Change" event as EventBridge delivers it (the fields rules see)."""
    return {
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2026-11-30T03:00:00Z",
        "region": "us-east-1",
        "resources": [alarm_arn],
        "detail": {
            "alarmName": alarm_arn.rsplit(":", 1)[1],
            "state": {
                "value": value,
                "reason": "Threshold Crossed",
                "timestamp": "2026-11-30T03:00:00.000+0000",
            },
            "previousState": {"value": previous, "reason": "", "timestamp": "2026-11-30T02:00:00.000+0000"},
        },
    }


def test_drift_rule_starts_a_build_when_the_drift_alarm_goes_into_alarm_only(
    template: dict[str, Any],
) -> None:
    values = stack_values(template, {})
    alarms = {
        name: resolve(alarm["Properties"]["AlarmName"], values, {})
        for name, alarm in resources(template, "AWS::CloudWatch::Alarm").items()
    }
    arn = {name: f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm}" for name, alarm in alarms.items()}
    # GIVEN the rule's pattern, with the drift alarm's ARN as CloudWatch reports it
    pattern = template["Resources"]["RetrainOnDriftRule"]["Properties"]["EventPattern"]
    assert pattern["resources"] == [{"Fn::GetAtt": ["DriftAlarm", "Arn"]}]
    pattern = {**pattern, "resources": [arn["DriftAlarm"]]}
    # THEN the drift alarm going into ALARM starts a build
    assert event_matches(pattern, alarm_state_change(arn["DriftAlarm"], "ALARM", "OK"))
    assert event_matches(pattern, alarm_state_change(arn["DriftAlarm"], "ALARM", "INSUFFICIENT_DATA"))
    # AND its return to OK does not, nor does any other alarm of the stack, nor another source
    assert not event_matches(pattern, alarm_state_change(arn["DriftAlarm"], "OK", "ALARM"))
    for name in set(arn) - {"DriftAlarm"}:
        assert not event_matches(pattern, alarm_state_change(arn[name], "ALARM", "OK")), name
    scheduled = {**alarm_state_change(arn["DriftAlarm"], "ALARM", "OK"), "source": "aws.events"}
    assert not event_matches(pattern, scheduled)


def test_retrain_failures_page_but_refusals_do_not(template: dict[str, Any]) -> None:
    alarm = template["Resources"]["RetrainFailedAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/CodeBuild", "FailedBuilds")
    assert dimensions(alarm) == {"ProjectName": {"Ref": "RetrainProject"}}
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert alarm["TreatMissingData"] == "notBreaching", "a week without a build is not a failure"


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
    template: dict[str, Any], environments: dict[str, dict[str, Any]], deploy_doc: str
) -> None:
    # GIVEN the MSK port table of the docs
    port_rows = table_rows(doc_sections(deploy_doc)["Kafka ports"])
    assert {row[0]: row[1] for row in port_rows} == MSK_PORTS
    for name, env in environments.items():
        values = env["overrides"]
        servers = [s for s in values["KafkaBootstrapServers"].split(",") if s]
        if not servers:
            continue
        # WHEN the template wires the result publisher for this environment
        variables = function_config(template, "StreamFunction", values)["Environment"]["Variables"]
        protocol = variables.get("FRAUD_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
        if values["KafkaMode"] == "msk":
            # THEN the publisher uses MSK's port for the protocol it speaks (the mapping finds
            # its own SASL/SCRAM brokers, 9096, from the cluster ARN)
            expected = PUBLISHER_PORTS[protocol]
            assert ports(servers) == {expected}, (
                f"{name}: the publisher speaks {protocol}, MSK serves that on {expected}; "
                "update samconfig.toml and docs/deploy.md together"
            )
        if values["KafkaMode"] != "none" and values["KafkaSaslScramSecretArn"]:
            # AND a consumer that logs in with SASL/SCRAM means a publisher that does too (with
            # self-managed Kafka one list serves both)
            assert protocol == "SASL_SSL", name
    # AND a broker address written next to SASL in the docs or the config uses 9096
    for line in (deploy_doc + SAMCONFIG.read_text()).splitlines():
        if "SASL" in line:
            assert set(re.findall(r"[\w.-]+:(\d{4})\b", line)) <= {"9096"}, line


def test_security_posture_explains_every_control_and_wildcard(
    template: dict[str, Any], deploy_doc: str
) -> None:
    section = doc_sections(deploy_doc)["Security posture"]
    # GIVEN the knobs of the hardening
    for parameter in (
        "ApiThrottlingRateLimit",
        "ApiThrottlingBurstLimit",
        "ApiReservedConcurrency",
        "StreamReservedConcurrency",
        "LogRetentionDays",
        "LabelsApiKeyParameter",
    ):
        assert f"`{parameter}`" in section, parameter
    # THEN the docs say what the access log holds and how long every group keeps it
    for field in json.loads(
        template["Resources"]["HttpApiStage"]["Properties"]["AccessLogSettings"]["Format"]
    ):
        assert f"`{field}`" in section, field
    assert "`/aws/lambda/<stack>-api`" in section and "`/aws/lambda/<stack>-stream`" in section
    # AND every action the functions get, with what it is allowed on, including each one that
    # stays "*" (the reason is next to it)
    for name in resources(template, "AWS::Serverless::Function"):
        for action in grants(function_config(template, name, {**EVERYTHING, **MSK})):
            if action.startswith(("kafka", "ec2:", "kms:")):
                assert f"`{action}`" in section, action
    assert "AWSLambdaVPCAccessExecutionRole" in section
