"""The `sam local` machinery without a daemon: the wrapper's rewrite of SAM's containers (through
docker-py's own argument conversion), the route resolver, the private daemon's flags, the
stand-in image's cache key, and the local-run settings (compose listeners, env files, samconfig)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml

from fraud_devstack import docker_local, sam_dev
from fraud_devstack import sam_local as wrapper

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"

# What SAM 1.170's Container.create passes to docker-py for a Lambda container (abridged).
SAM_KWARGS: dict[str, Any] = {
    "working_dir": "/var/task",
    "volumes": {"/work/.aws-sam/build/ApiFunction": {"bind": "/var/task", "mode": "ro,delegated"}},
    "tty": False,
    "use_config_proxy": True,
    "environment": {
        "AWS_LAMBDA_FUNCTION_HANDLER": "fraud_api.handler.lambda_handler",
        "FRAUD_REDIS_URL": "redis://127.0.0.1:6379/0",
        # what SAM makes of `!If [cond, X, !Ref AWS::NoValue]` when cond is false
        "FRAUD_KAFKA_SECURITY_PROTOCOL": "",
    },
    "ports": {"8080": ("127.0.0.1", 5123)},
    "entrypoint": ["/var/rapid/aws-lambda-rie", "--log-level", "error"],
    "mem_limit": "1024m",
    "labels": {"sam.cli.container.type": "lambda"},
}


class FakeApi:
    """docker-py's low-level API as far as ContainerCollection.create uses it."""

    _version = "1.41"

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        self.created.append(kwargs)
        return {"Id": f"c{len(self.created)}"}

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return {"Id": container_id}


class FakeClient:
    def __init__(self) -> None:
        self.api = FakeApi()


@pytest.fixture
def collection() -> type:
    """A subclass of docker-py's real ContainerCollection, so patching it leaves docker-py alone."""
    containers = pytest.importorskip("docker.models.containers")
    return type("Collection", (containers.ContainerCollection,), {})


def test_emulator_containers_get_host_networking_and_the_emulator_addresses(
    collection: type, tmp_path: Path
) -> None:
    # GIVEN the wrapper installed for a host-network-only daemon
    record = tmp_path / "containers"
    wrapper.install(
        collection,
        host_network=True,
        container_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"},
        record=record,
        port_finder=lambda: 40001,
    )
    client = FakeClient()
    # WHEN SAM creates a Lambda container through docker-py
    container = collection(client=client).create("public.ecr.aws/lambda/python:3.13-x86_64", [], **SAM_KWARGS)
    # THEN docker receives host networking, no port bindings, and the emulator listens where SAM calls
    created = client.api.created[0]
    host_config = created["host_config"]
    assert host_config["NetworkMode"] == "host"
    assert "PortBindings" not in host_config
    assert not created.get("ports")
    assert created["entrypoint"] == [
        "/var/rapid/aws-lambda-rie", "--log-level", "error",
        "--runtime-interface-emulator-address", "127.0.0.1:5123",
        "--runtime-api-address", "127.0.0.1:40001",
    ]  # fmt: skip
    # AND the environment is Lambda's: NoValue variables absent, the local endpoint added
    env = created["environment"]
    env = env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["FRAUD_REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert "FRAUD_KAFKA_SECURITY_PROTOCOL" not in env
    # AND the rest of SAM's settings survive, and the container is recorded for `make sam-down`
    assert host_config["Memory"] == 1024 * 1024 * 1024
    assert host_config["Binds"] == ["/work/.aws-sam/build/ApiFunction:/var/task:ro,delegated"]
    assert record.read_text().split() == [container.id] == ["c1"]


def test_other_containers_and_a_bridge_daemon_keep_their_ports(collection: type) -> None:
    wrapper.install(collection, host_network=False, port_finder=lambda: 40001)
    client = FakeClient()
    collection(client=client).create("public.ecr.aws/lambda/python:3.13-x86_64", [], **SAM_KWARGS)
    build = {k: v for k, v in SAM_KWARGS.items() if k != "entrypoint"}
    collection(client=client).create("some/build-image", ["sam", "build"], **build)
    for created in client.api.created:
        assert created["host_config"]["PortBindings"] == {
            "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5123"}]
        }
        assert created["host_config"].get("NetworkMode") != "host"
    assert client.api.created[0]["entrypoint"] == SAM_KWARGS["entrypoint"]


@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        (["/var/rapid/aws-lambda-rie", "--log-level", "error"], True),
        ("/var/rapid/aws-lambda-rie --log-level debug", True),
        (["/var/rapid/aws-lambda-rie", "--log-level", "error", "/lambda-entrypoint.sh"], True),
        (["/bin/sh"], False),
        (None, False),
        ([], False),
    ],
)
def test_is_emulator(entrypoint: Any, expected: bool) -> None:
    assert wrapper.is_emulator(entrypoint) is expected


@pytest.mark.parametrize("binding", [5123, ("127.0.0.1", 5123), [("127.0.0.1", 5123)]])
def test_every_docker_py_port_binding_shape_gives_sams_port(binding: Any) -> None:
    kwargs = {**SAM_KWARGS, "ports": {"8080/tcp": binding}}
    out = wrapper.host_network_kwargs(kwargs, runtime_api_port=9)
    assert out["entrypoint"][-3:] == ["127.0.0.1:5123", "--runtime-api-address", "127.0.0.1:9"]


def test_an_emulator_container_without_sams_port_is_refused() -> None:
    with pytest.raises(ValueError, match="8080"):
        wrapper.host_network_kwargs({**SAM_KWARGS, "ports": {}}, runtime_api_port=9)


def test_route_resolver_reads_a_sub_integration_uri_and_keeps_sams_answer() -> None:
    resources = {
        "ApiIntegration": {
            "Type": "AWS::ApiGatewayV2::Integration",
            "Properties": {
                "IntegrationUri": {"Fn::Sub": "arn:...:functions/${ApiFunction.Arn}/invocations"},
                "PayloadFormatVersion": "2.0",
            },
        }
    }

    def sams(resources: dict[str, Any], target: str) -> tuple[str | None, str | None]:
        return None, None

    def parse(uri: Any) -> str | None:
        return "ApiFunction" if "${ApiFunction.Arn}" in uri["Fn::Sub"] else None

    got = wrapper.route_function_name(sams, parse, resources, "integrations/ApiIntegration")
    assert got == ("ApiFunction", "2.0")
    assert wrapper.route_function_name(lambda r, t: ("Other", "1.0"), parse, resources, "integrations/x") == (
        "Other",
        "1.0",
    )
    assert wrapper.route_function_name(sams, parse, resources, "integrations/Missing") == (None, None)


@pytest.mark.skipif(not SAM_PYTHON.exists(), reason="the SAM CLI venv is not installed (`make sam-venv`)")
def test_with_the_pinned_sam_cli_every_route_of_the_template_reaches_the_api_function() -> None:
    # SAM's own reader answers None for every route of template.yaml; with the resolver, ApiFunction.
    script = f"""
import json, sys
sys.path.insert(0, {str(ROOT / "infra" / "fraud_devstack")!r})
from samcli.lib.providers.api_provider import ApiProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
def routes():
    stacks, _ = SamLocalStackProvider.get_stacks({str(ROOT / "template.yaml")!r}, parameter_overrides={{}})
    return sorted({{(r.path, r.function_name or "") for r in ApiProvider(stacks).api.routes}})
before = routes()
import sam_local
sam_local.install_route_resolver()
print(json.dumps({{"before": before, "after": routes()}}))
"""
    done = subprocess.run(
        [str(SAM_PYTHON), "-c", script], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {name for _, name in result["before"]} == {""}, (
        "SAM resolves these routes itself now: drop the patch"
    )
    paths = {path for path, _ in result["after"]}
    assert {"/predict", "/health", "/ready", "/v1/score"} <= paths
    assert {name for _, name in result["after"]} == {"ApiFunction"}


def test_report_line_is_seen_anywhere_in_a_chunk() -> None:
    report = b"REPORT RequestId: 1f32\tInit Duration: 0.04 ms\tDuration: 5.2 ms\tBilled Duration: 6 ms\tMemory Size: 1024 MB\tMax Memory Used: 1024 MB\t\n"
    chunk = b'{"level":"INFO","message":"request"}\nEND RequestId: 1f32\n' + report
    assert wrapper.report_seen(chunk)
    assert wrapper.report_seen(report)
    assert not wrapper.report_seen(b'{"level":"INFO","message":"REPORT RequestId: forged"}\n')
    assert not wrapper.report_seen(b"END RequestId: 1f32\n")


@pytest.mark.skipif(not SAM_PYTHON.exists(), reason="the SAM CLI venv is not installed (`make sam-venv`)")
def test_with_the_pinned_sam_cli_a_chunk_with_the_functions_log_line_signals_the_report() -> None:
    script = f"""
import io, json, sys, threading
sys.path.insert(0, {str(ROOT / "infra" / "fraud_devstack")!r})
from samcli.local.docker.container import Container
chunk = (b'{{"message":"request"}}\\nEND RequestId: 1\\nREPORT RequestId: 1\\tInit Duration: 0.04 ms\\t'
         b'Duration: 5.2 ms\\tBilled Duration: 6 ms\\tMemory Size: 1024 MB\\tMax Memory Used: 1024 MB\\t\\n')
def signalled():
    event = threading.Event()
    Container._handle_data_writing(io.BytesIO(), chunk, event)
    return event.is_set()
before = signalled()
import sam_local
sam_local.install_report_detector()
print(json.dumps({{"before": before, "after": signalled()}}))
"""
    done = subprocess.run(
        [str(SAM_PYTHON), "-c", script], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"before": False, "after": True}, "SAM sees this REPORT itself now: drop the patch"


def test_split_argv_and_env_files(tmp_path: Path) -> None:
    assert wrapper.split_argv(["--host-network", "--", "local", "invoke"]) == (
        ["--host-network"],
        ["local", "invoke"],
    )
    assert wrapper.split_argv(["local", "invoke"]) == ([], ["local", "invoke"])
    sam_format = tmp_path / "a.json"
    sam_format.write_text(json.dumps({"Parameters": {"A": "1", "B": 2}}))
    assert wrapper.read_container_env(sam_format) == {"A": "1", "B": "2"}


def test_the_wrapper_imports_nothing_of_the_project() -> None:
    # It runs in the SAM CLI's venv, where none of the project's packages are installed.
    source = Path(wrapper.__file__).read_text()
    assert "fraud_" not in "".join(
        line for line in source.splitlines() if line.startswith(("import", "from"))
    )
    assert sys.modules["fraud_devstack.sam_local"] is wrapper


# -- the private daemon and the stand-in image --------------------------------------------------


def test_private_daemon_leaves_the_host_network_alone(tmp_path: Path) -> None:
    argv = docker_local.daemon_argv(tmp_path)
    for flag in ("--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
                 "--ip-masq=false", "--userland-proxy=false"):  # fmt: skip
        assert flag in argv
    assert f"--host=unix://{tmp_path}/docker.sock" in argv
    assert not [a for a in argv if a.startswith(("--host=tcp", "-H"))]
    for option in ("--data-root", "--exec-root", "--pidfile", "--config-file"):
        (value,) = [a.split("=", 1)[1] for a in argv if a.startswith(f"{option}=")]
        assert value.startswith(str(tmp_path))


def test_a_users_daemon_is_preferred_and_ours_is_not_mistaken_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    answering: set[str] = set()
    monkeypatch.setattr(docker_local, "ping", lambda host, timeout=2.0: host in answering)
    ours = docker_local.private_host()
    answering.add(ours)
    assert docker_local.users_daemon({"DOCKER_HOST": ours}) is None
    answering.add("unix:///var/run/docker.sock")
    assert docker_local.users_daemon({}) == "unix:///var/run/docker.sock"
    answering.add("tcp://127.0.0.1:2375")
    assert docker_local.users_daemon({"DOCKER_HOST": "tcp://127.0.0.1:2375"}) == "tcp://127.0.0.1:2375"


def test_stand_in_image_tag_changes_with_its_inputs_only(tmp_path: Path) -> None:
    home = tmp_path / "3.13.0"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "python3.13").write_bytes(b"python")
    a = docker_local.inputs_hash(docker_local.image_inputs(home, "http://deb.debian.org/debian"))
    assert a == docker_local.inputs_hash(docker_local.image_inputs(home, "http://deb.debian.org/debian"))
    assert a != docker_local.inputs_hash(docker_local.image_inputs(home, "http://mirror.example/debian"))
    (home / "bin" / "python3.13").write_bytes(b"another python")
    assert a != docker_local.inputs_hash(docker_local.image_inputs(home, "http://deb.debian.org/debian"))


def test_stand_in_bootstrap_runs_the_runtime_interface_client() -> None:
    assert 'exec /var/lang/bin/python3.13 -m awslambdaric "$_HANDLER"' in docker_local.BOOTSTRAP
    assert docker_local.IMAGE_ENV["LD_LIBRARY_PATH"].startswith("/var/lang/lib:")
    assert docker_local.IMAGE_ENV["PYTHONPATH"].split(":")[:3] == [
        "/var/task", "/opt/python/lib/python3.13/site-packages", "/opt/python",
    ]  # fmt: skip
    assert any(p.startswith("awslambdaric==") for p in docker_local.RUNTIME_PACKAGES)


def test_apt_mirror_is_read_from_the_apt_sources() -> None:
    mirror = docker_local.apt_mirror()
    assert mirror.startswith(("http://", "https://")) and mirror.rstrip("/").endswith("/debian")


# -- local-run settings ---------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text()))


def listeners(value: str) -> dict[str, str]:
    return dict(item.split("://", 1) for item in value.split(","))


def test_compose_kafka_advertises_an_address_for_host_clients_and_one_for_containers() -> None:
    env = compose()["services"]["kafka"]["environment"]
    declared = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(advertised) <= set(declared) and set(declared) <= set(protocols)
    host_side = [name for name, address in advertised.items() if address.startswith("127.0.0.1:")]
    container_side = [name for name, address in advertised.items() if address.startswith("kafka:")]
    assert host_side and container_side
    # each advertised port is the one its listener binds, and the host one is published on loopback
    for name, address in advertised.items():
        assert address.rsplit(":", 1)[1] == declared[name].rsplit(":", 1)[1]
    (host_port,) = (advertised[name].rsplit(":", 1)[1] for name in host_side)
    assert f"127.0.0.1:{host_port}:{host_port}" in compose()["services"]["kafka"]["ports"]
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in declared


def test_compose_publishes_only_on_loopback_and_initialises_buckets_topics_and_model() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    init_topics = " ".join(services["init-topics"]["command"])
    for topic in ("transactions", "fraud-scores", "fraud-alerts", "fraud-dlq", "fraud-labels"):
        assert topic in init_topics
    assert "kafka:19092" in init_topics
    init_s3 = services["init-s3"]
    assert "fraud-models" in init_s3["command"][0] and "fraud-logs" in init_s3["command"][0]
    assert any(v.startswith("../artifacts/registry:") for v in init_s3["volumes"])
    assert init_s3["depends_on"]["s3"]["condition"] == "service_healthy"


def test_sam_local_env_file_names_compose_services_and_holds_no_secret() -> None:
    values = json.loads((ROOT / "infra" / "sam-local-env.json").read_text())["Parameters"]
    services = compose()["services"]
    assert values["FRAUD_REDIS_URL"] == "redis://redis:6379/0" and "redis" in services
    kafka_env = services["kafka"]["environment"]
    assert f"DOCKER://{values['FRAUD_KAFKA_BOOTSTRAP_SERVERS']}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert values["AWS_ENDPOINT_URL"] == "http://s3:5000"
    assert not [k for k in values if "SECRET" in k or "PASSWORD" in k or "TOKEN" in k]


def test_samconfig_local_declares_the_variables_the_env_file_overrides() -> None:
    # SAM's --env-vars only overrides variables the template declares; RedisUrl and
    # KafkaBootstrapServers make the functions declare FRAUD_REDIS_URL and FRAUD_KAFKA_BOOTSTRAP_SERVERS.
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["local"]
    for command in ("local_start_api", "local_invoke"):
        settings = config[command]["parameters"]
        overrides = dict(item.split("=", 1) for item in settings["parameter_overrides"])
        assert overrides["RedisUrl"] and overrides["KafkaBootstrapServers"]
        assert settings["env_vars"] == "infra/sam-local-env.json"
        assert "skip_pull_image" not in settings, "users with Docker pull the real images"
    assert config["local_start_api"]["parameters"]["host"] == "127.0.0.1"
    assert config["local_start_api"]["parameters"]["warm_containers"] == "EAGER"


def test_make_targets_run_sam_over_the_built_template_with_the_local_config(tmp_path: Path) -> None:
    private = docker_local.Daemon("unix:///x/docker.sock", private=True)
    users = docker_local.Daemon("unix:///var/run/docker.sock", private=False)
    env, record = tmp_path / "env.json", tmp_path / "containers"
    args = sam_dev.sam_args(["local", "invoke", "StreamFunction"], daemon=private, env_file=env, record=record,
                            host_network=True)  # fmt: skip
    at = args.index("--")
    assert "--host-network" in args[:at] and "--skip-pull-image" in args[at:]
    assert args[at + 1 :][:3] == ["local", "invoke", "StreamFunction"]
    assert args[args.index("--config-env") + 1] == "local"
    assert args[args.index("--template") + 1].endswith(".aws-sam/build/template.yaml")
    plain = sam_dev.sam_args(
        ["local", "start-api"], daemon=users, env_file=env, record=record, host_network=False
    )
    assert "--host-network" not in plain and "--skip-pull-image" not in plain
    assert "host.docker.internal:host-gateway" in plain


def test_function_env_points_containers_at_the_stack() -> None:
    common = {"redis_url": "redis://127.0.0.1:6380/0", "kafka": "127.0.0.1:9093", "s3_url": "http://127.0.0.1:4566",
              "model_name": "m"}  # fmt: skip
    host = sam_dev.function_env(**common, private=True)
    assert host["FRAUD_REDIS_URL"] == "redis://127.0.0.1:6380/0"
    assert host["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    bridge = sam_dev.function_env(**common, private=False)
    assert bridge["FRAUD_KAFKA_BOOTSTRAP_SERVERS"] == "host.docker.internal:9093"
    assert bridge["FRAUD_REGISTRY_URI"] == "s3://fraud-models/models"


def test_invoke_prints_the_stream_functions_account_of_the_batch() -> None:
    logs = "\n".join(
        [
            "Mounting /x as /var/task",
            '{"level":"INFO","message":"batch","received":4,"scored":3,"duplicates":0,"dead_lettered":1,"alerts":1,"labels":0}',
            "END RequestId: 1",
        ]
    )
    summary = sam_dev.batch_summary(logs)
    assert summary == "received 4, scored 3, duplicates 0, dead-lettered 1, alerts 1, labels 0"
    assert sam_dev.batch_summary("no json here\n{not json") is None


def test_daemon_directory_is_short_enough_for_its_sockets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FRAUD_SAM_LOCAL_DIR", "/work/repo/.sam-local")
    assert docker_local.docker_dir() == Path("/work/repo/.sam-local/docker")
    deep = tmp_path / ("d" * 120)
    monkeypatch.setenv("FRAUD_SAM_LOCAL_DIR", str(deep))
    moved = docker_local.docker_dir()
    assert len(str(moved / "exec" / "containerd" / "containerd.sock.ttrpc")) < 100
    assert moved == docker_local.docker_dir(), "the same checkout always gets the same directory (its cache)"
    assert docker_local.private_host() == f"unix://{moved}/docker.sock"


def compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) or Debian's docker-compose 1.29, whichever is installed."""
    import shutil

    plugin = (
        subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if shutil.which("docker")
        else None
    )
    if plugin is not None and plugin.returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(
    compose_cli() is None, reason="no docker compose / docker-compose to validate the file with"
)
def test_compose_file_is_valid_for_compose(tmp_path: Path) -> None:
    cli = compose_cli()
    assert cli is not None
    text = (ROOT / "infra" / "docker-compose.yml").read_text()
    if cli == ["docker-compose"]:
        # Compose 1.x predates the top-level `name` of the Compose Specification.
        text = "\n".join(line for line in text.splitlines() if not line.startswith("name:"))
    copy = ROOT / "infra" / f".compose-check-{uuid4().hex[:8]}.yml"
    copy.write_text(text)
    try:
        done = subprocess.run(
            [*cli, "-p", "fraud-detection", "-f", str(copy), "config"],
            env={"PATH": os.environ["PATH"], "LOCALSTACK_AUTH_TOKEN": "unused"},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        copy.unlink()
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)["services"]
    assert (
        rendered["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        == "HOST://127.0.0.1:9092,DOCKER://kafka:19092"
    )
    registry_mount = rendered["init-s3"]["volumes"][0]
    source = registry_mount["source"] if isinstance(registry_mount, dict) else registry_mount.split(":")[0]
    assert source == str(ROOT / "artifacts" / "registry")
