"""Serve the HTTP API locally with uvicorn: the no-Docker `sam local start-api`.

    python -m fraud_devstack.api [--port 8000]        in the foreground (Ctrl-C stops it)
    python -m fraud_devstack.api --background          what `make api` runs: returns once it serves;
                                                       `make stack-down` (or `... api --stop`) stops it

Finds the local stack by itself (.stack/stack.env while `make stack` runs), says before serving
what the API will use — model, registry, Redis — and what to do when one is missing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from fraud_core.cli import cli_parser, run_cli
from fraud_devstack.services import ServiceError, start_process, wait_for_port
from fraud_devstack.stack import API_PID, STACK, load_stack_env, stop_pid_file


def preflight() -> list[str]:
    """One line per dependency: what the API will use, or why it cannot yet."""
    from fraud_api import deps
    from fraud_core.errors import FraudCoreError
    from fraud_core.settings import get_settings

    settings = get_settings()
    lines = []
    try:
        scorer = deps.get_model_provider().get()
        lines.append(
            f"model {scorer.manifest.name} {scorer.version} ({scorer.shape.name} shape) from {settings.registry_uri}"
        )
    except FraudCoreError as exc:
        lines.append(f"NO MODEL YET — requests will answer 503 until one is published: {exc}")
    if settings.redis_url is None and settings.redis_url_secret_arn is None:
        lines.append("no Redis configured: in-process store (start `make stack` for the shared one)")
    else:
        try:
            deps.get_result_store().ping()
            lines.append("Redis reachable")
        except FraudCoreError as exc:
            lines.append(f"REDIS UNREACHABLE — scoring works, stored results and card counters do not: {exc}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.api", __doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--background", action="store_true", help="serve in the background; return once it answers"
    )
    parser.add_argument("--stop", action="store_true", help="stop the API that --background started")
    args = parser.parse_args(argv)
    if args.stop:
        print("stopped the API" if stop_pid_file(API_PID) else "no background API is running")
        return 0
    if args.background:
        return _background(args.host, args.port)
    load_stack_env()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for line in preflight():
        print(line, file=sys.stderr)
    print(
        f"serving on http://{args.host}:{args.port} (docs at /docs, analyst console at /console)",
        file=sys.stderr,
    )
    import uvicorn

    from fraud_api.main import app

    uvicorn.run(app, host=args.host, port=args.port, lifespan="off", log_level="warning")
    return 0


def _background(host: str, port: int) -> int:
    """Start this module in the foreground as a detached process; wait until it serves."""
    if stop_pid_file(API_PID):
        print("stopped the API that was running")
    logs = STACK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "api.log"
    with log.open("wb") as out:
        argv = [sys.executable, "-m", "fraud_devstack.api", "--host", host, "--port", str(port)]
        proc = start_process(argv, env=os.environ, stdout=out, track=False)
    API_PID.write_text(str(proc.pid))
    try:
        wait_for_port(port, timeout=60, proc=proc)
    except ServiceError as exc:
        stop_pid_file(API_PID)
        raise ServiceError(f"the API did not start ({exc}); its log:\n{log.read_text()[-2000:]}") from exc
    time.sleep(0.2)  # let the preflight lines reach the log
    sys.stderr.write(log.read_text())
    print(f"API pid {proc.pid}, log {log}; `make stack-down` stops it with the stack", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
