"""Serve the HTTP API locally with uvicorn: the no-Docker `sam local start-api`.

    python -m fraud_devstack.api [--port 8000]       (what `make api` runs)

Finds the local stack by itself (.stack/stack.env while `make stack` runs), says before serving
what the API will use — model, registry, Redis — and what to do when one is missing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from fraud_core.cli import cli_parser, run_cli
from fraud_devstack.stack import load_stack_env


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
    args = parser.parse_args(argv)
    load_stack_env()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for line in preflight():
        print(line, file=sys.stderr)
    print(f"serving on http://{args.host}:{args.port} (docs at /docs); Ctrl-C stops", file=sys.stderr)
    import uvicorn

    from fraud_api.main import app

    uvicorn.run(app, host=args.host, port=args.port, lifespan="off", log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
