"""`sam local` over the built template against the local stack (`make sam-api`, `make sam-invoke`).

    python -m fraud_devstack.sam_dev api      # sam local start-api on 127.0.0.1:3000, warm containers
    python -m fraud_devstack.sam_dev invoke   # StreamFunction on events/kafka-msk.json, ApiFunction on
                                              # events/apigw-v2-predict.json; prints both responses
    python -m fraud_devstack.sam_dev down     # stop exactly what `api`/`invoke` started, daemon included

Needs `make stack` (Redis, Kafka, S3 on 127.0.0.1) and `make build`. Docker: your own daemon when
one answers (real AWS base images; SAM pulls them), else a private daemon on host networking only
with the stand-in base image (`python -m fraud_devstack.docker_local --help`). The functions get
the stack's endpoints through `.sam-local/env.json`; the current model of the local registry is
published to the stack's S3 (s3://fraud-models/models) first, since the functions read S3 only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from fraud_core.cli import cli_parser, run_cli
from fraud_core.errors import FraudCoreError
from fraud_devstack import docker_local
from fraud_devstack.docker_local import Daemon
from fraud_devstack.services import free_port, pid_alive, port_is_free, start_process, stop_process

ROOT = docker_local.ROOT
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
WRAPPER = ROOT / "infra" / "fraud_devstack" / "sam_local.py"
BUILT_TEMPLATE = ROOT / ".aws-sam" / "build" / "template.yaml"
MODEL_BUCKET = "fraud-models"
LOG_BUCKET = "fraud-logs"
API_PORT = 3000
INVOKES = (("StreamFunction", "events/kafka-msk.json"), ("ApiFunction", "events/apigw-v2-predict.json"))


class SamLocalError(FraudCoreError):
    """`sam local` cannot run: no stack, no build, no SAM CLI, or it did not come up."""


def state() -> Path:
    path = docker_local.state_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def function_env(
    *, redis_url: str, kafka: str, s3_url: str, model_name: str, private: bool
) -> dict[str, str]:
    """What the functions need to reach the stack, as seen from their containers: 127.0.0.1 on
    host networking, ``host.docker.internal`` from a bridge network of the user's Docker."""

    def seen(url: str) -> str:
        return url if private else url.replace("127.0.0.1", "host.docker.internal")

    return {
        "FRAUD_REDIS_URL": seen(redis_url),
        "FRAUD_KAFKA_BOOTSTRAP_SERVERS": seen(kafka),
        "FRAUD_REGISTRY_URI": f"s3://{MODEL_BUCKET}/models",
        "FRAUD_MODEL_NAME": model_name,
        "FRAUD_LOG_URI": f"s3://{LOG_BUCKET}",
        "AWS_ENDPOINT_URL": seen(s3_url),
        # No X-Ray daemon locally.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def sam_args(
    command: Sequence[str], *, daemon: Daemon, env_file: Path, record: Path, host_network: bool
) -> list[str]:
    """The wrapper's command line running ``sam <command>`` against ``daemon``."""
    wrapper = [str(SAM_PYTHON), str(WRAPPER), "--container-env", str(env_file), "--record", str(record)]
    if host_network:
        wrapper.append("--host-network")
    sam = [*command, "--config-env", "local", "--template", str(BUILT_TEMPLATE), "--env-vars", str(env_file)]
    if daemon.private:
        sam.append("--skip-pull-image")  # no registry: the stand-in image is already there
    elif not host_network:
        sam += ["--add-host", "host.docker.internal:host-gateway"]
    return [*wrapper, "--", *sam]


def prepare() -> tuple[Daemon, Path, bool]:
    """Daemon (and stand-in image), the stack's model in S3, the functions' env file."""
    from fraud_devstack.stack import load_stack_env

    if not SAM_PYTHON.exists():
        raise SamLocalError("the SAM CLI is not installed: `make sam-venv`")
    if not BUILT_TEMPLATE.exists():
        raise SamLocalError(f"{BUILT_TEMPLATE.relative_to(ROOT)} does not exist: `make build` first")
    if not load_stack_env(quiet=True):
        raise SamLocalError("the local stack is not running: `make stack` first")
    daemon = docker_local.ensure_daemon()
    host_network = daemon.private or os.environ.get("SAM_HOST_NETWORK") == "1"
    if daemon.private:
        docker_local.ensure_image(daemon)
    else:
        print(f"using your Docker daemon at {daemon.host} (real AWS base images)")
    from fraud_core.settings import Settings

    settings = Settings()
    model = publish_current_model(settings.registry_uri, settings.model_name)
    print(f"model {settings.model_name} {model} served from s3://{MODEL_BUCKET}/models")
    env = function_env(
        redis_url=os.environ["FRAUD_REDIS_URL"],
        kafka=os.environ["FRAUD_KAFKA_BOOTSTRAP_SERVERS"],
        s3_url=os.environ["AWS_ENDPOINT_URL"],
        model_name=settings.model_name,
        private=host_network,
    )
    env_file = state() / "env.json"
    env_file.write_text(json.dumps({"Parameters": env}, indent=2) + "\n")
    return daemon, env_file, host_network


def publish_current_model(source_uri: str, name: str) -> str:
    """Copy the current model of ``source_uri`` to the stack's S3 registry unless it is current there."""
    import boto3

    from fraud_core.errors import ModelUnavailableError
    from fraud_core.registry import ModelRegistry, open_registry, store_from_uri

    s3 = boto3.client("s3")
    for bucket in (MODEL_BUCKET, LOG_BUCKET):
        try:
            s3.head_bucket(Bucket=bucket)
        except s3.exceptions.ClientError:
            s3.create_bucket(Bucket=bucket)
    source = open_registry(source_uri, name)
    pointer, manifest = source.current_manifest()
    target = ModelRegistry(store_from_uri(f"s3://{MODEL_BUCKET}/models"), name)
    try:
        if target.current_manifest()[0].version == pointer.version:
            return pointer.version
    except ModelUnavailableError:
        pass
    target.publish(manifest, {f: source.read_verified(manifest, f) for f in manifest.files})
    return pointer.version


def wait_healthy(port: int, proc: subprocess.Popen[bytes], *, timeout: float, log: Path) -> float:
    """Seconds until GET /health answers 200 through SAM (the warm container is up by then)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise SamLocalError(f"sam local start-api exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=60) as resp:
                if resp.status == 200:
                    return time.monotonic() - started
        except urllib.error.HTTPError as exc:
            # SAM is up and the function answered (or failed): no point in waiting longer.
            raise SamLocalError(f"GET /health through sam answered {exc.code}:\n{_tail(log)}") from exc
        except OSError:
            time.sleep(0.2)
    raise SamLocalError(f"no answer from http://127.0.0.1:{port}/health after {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def _api_record() -> Path:
    return state() / "sam-api.json"


def api() -> int:
    record = _api_record()
    if record.exists():
        info = json.loads(record.read_text())
        if pid_alive(info["pid"]):
            print(f"sam local start-api already runs on http://127.0.0.1:{info['port']} (pid {info['pid']})")
            return 0
    daemon, env_file, host_network = prepare()
    port = API_PORT if port_is_free(API_PORT) else free_port()
    if port != API_PORT:
        print(f"port {API_PORT} is taken: the API listens on 127.0.0.1:{port} instead")
    command = ["local", "start-api", "--host", "127.0.0.1", "--port", str(port), "--warm-containers", "EAGER"]
    argv = sam_args(
        command, daemon=daemon, env_file=env_file, record=state() / "containers", host_network=host_network
    )
    log = state() / "sam-api.log"
    with log.open("wb") as out:
        proc = start_process(argv, env=daemon.env, stdout=out, cwd=ROOT, track=False)
    record.write_text(json.dumps({"pid": proc.pid, "port": port}))
    try:
        ready = wait_healthy(port, proc, timeout=300, log=log)
    except SamLocalError:
        stop_process(proc)
        record.unlink(missing_ok=True)
        raise
    print(
        f"sam local start-api on http://127.0.0.1:{port} (ready {ready:.1f} s after start; log {log.relative_to(ROOT)})\n"
        f"  curl -s localhost:{port}/predict -H 'content-type: application/json' -d @events/requests/predict.json\n"
        "stop it (and the Docker daemon it started) with `make sam-down`"
    )
    return 0


def invoke() -> int:
    daemon, env_file, host_network = prepare()
    log = state() / "sam-invoke.log"
    with log.open("wb") as out:
        for function, event in INVOKES:
            argv = sam_args(
                ["local", "invoke", function, "--event", event],
                daemon=daemon,
                env_file=env_file,
                record=state() / "containers",
                host_network=host_network,
            )
            started = time.monotonic()
            done = subprocess.run(argv, env=daemon.env, cwd=ROOT, capture_output=True, check=False)
            elapsed = time.monotonic() - started
            out.write(done.stderr)
            report = [
                ln for ln in done.stderr.decode(errors="replace").splitlines() if ln.startswith("REPORT")
            ]
            if done.returncode != 0 or not done.stdout.strip():
                raise SamLocalError(f"sam local invoke {function} failed ({done.returncode}):\n{_tail(log)}")
            print(f"$ sam local invoke {function} -e {event}    # {elapsed:.1f} s")
            print(done.stdout.decode().strip())
            summary = batch_summary(done.stderr.decode(errors="replace"))
            if summary:
                print(f"  {summary}")
            if report:
                print(f"  {report[-1].split(chr(9), 1)[-1].strip()}")
    print(f"function logs: {log.relative_to(ROOT)}")
    if daemon.private:
        print("the private Docker daemon keeps running for the next call; `make sam-down` stops it")
    return 0


def batch_summary(logs: str) -> str | None:
    """The stream function's own account of a batch (its "batch" log line), in one line."""
    for line in reversed(logs.splitlines()):
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "batch":
            fields = ("received", "scored", "duplicates", "dead_lettered", "alerts", "labels")
            return ", ".join(f"{f.replace('_', '-')} {entry[f]}" for f in fields if f in entry)
    return None


def down() -> int:
    record = _api_record()
    if record.exists():
        pid = int(json.loads(record.read_text())["pid"])
        if pid_alive(pid):
            # A background sam ignores SIGINT: SIGTERM to its process group.
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)
            print(f"stopped sam local start-api (pid {pid})")
        record.unlink()
    containers = state() / "containers"
    daemon = docker_local.find_daemon()
    if containers.exists():
        ids = containers.read_text().split()
        if daemon is not None and ids:
            subprocess.run(["docker", "rm", "-f", *ids], env=daemon.env, capture_output=True, check=False)
        containers.unlink()
    if docker_local.stop_private():
        print("stopped the private Docker daemon")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.sam_dev", __doc__)
    parser.add_argument("command", choices=["api", "invoke", "down"])
    args = parser.parse_args(argv)
    return {"api": api, "invoke": invoke, "down": down}[args.command]()


if __name__ == "__main__":
    sys.exit(run_cli(main))
