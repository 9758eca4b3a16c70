"""Serve an ASGI app with uvicorn on a loopback port in a background thread (tests, benchmarks)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from fraud_devstack.services import free_port, wait_for_port


@contextlib.contextmanager
def serve_in_thread(app: Any, *, port: int | None = None) -> Iterator[str]:
    """Yield the base URL while uvicorn serves ``app``; stop it on exit."""
    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        wait_for_port(port, timeout=15)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        deadline = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.1)
