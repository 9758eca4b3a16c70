"""The API as its own uvicorn process, and wrk against it: shared by the HTTP benchmark and the
reliability suite's load scenario."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fraud_devstack.services import Service, free_port, spawn

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %%d, "seconds": %%f, "errors": %%d, "non2xx": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def start_api_server(env: Mapping[str, str], *, log_dir: Path | None = None) -> Service:
    """`fraud_api.main:app` under uvicorn (1 worker, OMP_NUM_THREADS=1) on a free loopback port."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "fraud_api.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--lifespan",
        "off",
    ]
    return spawn(
        "uvicorn",
        argv,
        port=port,
        url=f"http://127.0.0.1:{port}",
        log_dir=log_dir,
        env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
        timeout=60,
    )


def run_wrk(url: str, body: Any, *, connections: int, duration: int) -> dict[str, Any]:
    """POST ``body`` (JSON) to ``url`` for ``duration`` s; requests, errors, non-2xx, latency percentiles."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_WRK_SCRIPT % (body if isinstance(body, str) else json.dumps(body)))
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(min(connections, 2)),
                "-c",
                str(connections),
                "-d",
                f"{duration}s",
                "--timeout",
                "5s",
                "-s",
                fh.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=True,
        )
    finally:
        os.unlink(fh.name)
    line = next(line for line in out.stdout.splitlines() if line.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    result["requests_per_s"] = result["requests"] / result["seconds"]
    return result
