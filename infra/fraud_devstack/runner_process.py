"""The local runner in a child process, with what it has processed counted from its batch lines
(the soak and the loop demo's replay through the local stack)."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import IO

from fraud_devstack.streaming import runner_argv

_BATCH = re.compile(r"batch of (\d+):.* failed (\d+)")


class RunnerProcess:
    """``python -m fraud_devstack.local_runner --quiet`` on ``topic``; ``processed`` counts the
    records of every batch the handler confirmed (received minus reported for redelivery)."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        env: Mapping[str, str],
        batch_size: int = 1000,
        idle_exit: float = 3600,
    ) -> None:
        argv = runner_argv(
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            group_id=group_id,
            batch_size=batch_size,
            idle_exit=idle_exit,
        )
        self.proc = subprocess.Popen(argv, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.processed = 0
        self.tail: deque[str] = deque(maxlen=40)
        """The runner's last output lines, for the error when it stops early."""
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            if m := _BATCH.search(line):
                self.processed += int(m.group(1)) - int(m.group(2))

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.tail)
            raise RuntimeError(f"the local runner exited with {self.proc.returncode}:\n{tail}")

    def wait_for(self, total: int, *, timeout: float = 1800) -> None:
        """Until ``total`` records have been processed since the runner started."""
        deadline = time.monotonic() + timeout
        while self.processed < total:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the runner processed {self.processed} of {total} records in {timeout:g} s"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> RunnerProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
