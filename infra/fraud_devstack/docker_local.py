"""A Docker daemon for `sam local`: the user's own if one answers, else a private one, plus a
locally built stand-in for the Lambda Python base image.

    python -m fraud_devstack.docker_local up       # a reachable daemon (start the private one if none)
    python -m fraud_devstack.docker_local image    # build the stand-in image if its inputs changed
    python -m fraud_devstack.docker_local status   # which daemon, which image
    python -m fraud_devstack.docker_local down     # stop the private daemon (and its containers)

The private daemon never touches the host network: no bridge, no iptables, no forwarding, no
userland proxy; its data, exec root, pidfile and socket live under ``.sam-local/docker`` (or
``$FRAUD_SAM_LOCAL_DIR/docker``). Containers run with host networking and reach the local stack
on 127.0.0.1 (``fraud_devstack.sam_local`` rewrites SAM's containers for that).

No image registry is reachable here, so the stand-in image is built from the configured apt
mirror (debootstrap minbase of Debian), the Lambda runtime's Python from pyenv under
``/var/lang``, and ``awslambdaric`` + ``boto3`` from PyPI under ``/var/runtime``. It is not
Amazon Linux: it proves handler paths, the layer layout under /opt/python, the environment and
SAM's event shapes, not the OS. It is tagged with the hash of its inputs and rebuilt only when
they change.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fraud_core.cli import cli_parser, run_cli
from fraud_core.errors import FraudCoreError
from fraud_devstack.services import pid_alive

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_IMAGE = "public.ecr.aws/lambda/python:3.13-x86_64"
"""The base image SAM looks for with a python3.13 zip function (x86_64)."""
STAND_IN_REPO = "fraud-local/lambda-python"
INPUTS_LABEL = "org.fraud-detection.stand-in-inputs"
PYTHON_VERSION = "3.13"
# Pinned so the image (and its hash tag) only changes when someone changes these lines.
RUNTIME_PACKAGES = ("awslambdaric==4.2.2", "boto3==1.44.8")
DEBIAN_SUITE = "bookworm"
# The shared libraries pyenv's CPython links against (ssl, ctypes, sqlite3, bz2, readline, ...).
DEBIAN_PACKAGES = (
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "libbz2-1.0",
    "libreadline8",
    "libncursesw6",
    "libexpat1",
)
BOOTSTRAP = """#!/bin/sh
# Stand-in for the Lambda python3.13 runtime's bootstrap: the runtime interface client runs the handler.
exec /var/lang/bin/python3.13 -m awslambdaric "$_HANDLER"
"""
# What the real image sets (docker inspect public.ecr.aws/lambda/python:3.13), and the sys.path
# Lambda gives a python function: the task, then the layers' python/ directories, then the runtime.
IMAGE_ENV = {
    "LANG": "en_US.UTF-8",
    "TZ": ":/etc/localtime",
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
    "PYTHONPATH": "/var/task:/opt/python/lib/python3.13/site-packages:/opt/python:/var/runtime",
}
# Parts of CPython a Lambda function never uses (the real runtime drops them too).
PYTHON_TRIM = (
    "lib/python3.13/test",
    "lib/python3.13/idlelib",
    "lib/python3.13/tkinter",
    "lib/python3.13/turtledemo",
    "lib/python3.13/ensurepip",
    "lib/python3.13/site-packages",
    "lib/python3.13/config-3.13-x86_64-linux-gnu",
    "share",
    "include",
)
DAEMON_FLAGS = (
    "--bridge=none",
    "--iptables=false",
    "--ip6tables=false",
    "--ip-forward=false",
    "--ip-masq=false",
    "--userland-proxy=false",
)


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Daemons this process started: waited for (reaped) when stopped, never left as zombies."""


class DockerUnavailableError(FraudCoreError):
    """No daemon answers and none can be started (no dockerd, or not root)."""


def state_dir() -> Path:
    """Where the private daemon and the image cache live (``$FRAUD_SAM_LOCAL_DIR`` or ``.sam-local``)."""
    return Path(os.environ.get("FRAUD_SAM_LOCAL_DIR") or ROOT / ".sam-local")


@dataclass(frozen=True)
class Daemon:
    """A Docker daemon to talk to: ``host`` is its DOCKER_HOST; ``private`` when this module runs it."""

    host: str
    private: bool
    pid: int | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment of a docker/sam child talking to this daemon."""
        return {**os.environ, "DOCKER_HOST": self.host}


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def ping(host: str, *, timeout: float = 2.0) -> bool:
    """Whether the daemon at ``host`` (``unix://…`` or ``tcp://…``) answers ``/_ping``."""
    conn: http.client.HTTPConnection
    if host.startswith("unix://"):
        path = host[len("unix://") :]
        if not Path(path).exists():
            return False
        conn = _UnixHTTPConnection(path, timeout)
    elif host.startswith("tcp://"):
        address = host[len("tcp://") :]
        name, _, port = address.rpartition(":")
        conn = http.client.HTTPConnection(name, int(port), timeout=timeout)
    else:
        return False
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def docker_dir() -> Path:
    """The private daemon's directory: ``<state dir>/docker``, or a short one under the temp
    directory when that path is too long for the unix sockets dockerd and containerd create."""
    wanted = state_dir() / "docker"
    if len(str(wanted / "exec" / "containerd" / "containerd.sock.ttrpc")) < 100:
        return wanted
    digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"fraud-sam-docker-{digest}"


def private_host(root: Path | None = None) -> str:
    return f"unix://{(root or docker_dir()) / 'docker.sock'}"


def _pidfile(root: Path | None = None) -> Path:
    return (root or docker_dir()) / "dockerd.pid"


def private_pid(root: Path | None = None) -> int | None:
    """The pid of the running private daemon, if any."""
    path = _pidfile(root)
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().strip())
        if pid_alive(pid):
            return pid
    return None


def users_daemon(environ: dict[str, str] | None = None) -> str | None:
    """DOCKER_HOST or the default socket, when a daemon that is not ours answers there."""
    env = os.environ if environ is None else environ
    ours = private_host()
    candidates = [env["DOCKER_HOST"]] if env.get("DOCKER_HOST") else []
    candidates.append("unix:///var/run/docker.sock")
    for host in candidates:
        if host != ours and ping(host):
            return host
    return None


def find_daemon() -> Daemon | None:
    """The user's daemon if one answers, else the private one if it runs; None otherwise."""
    user = users_daemon()
    if user:
        return Daemon(user, private=False)
    pid = private_pid()
    if pid and ping(private_host()):
        return Daemon(private_host(), private=True, pid=pid)
    return None


def daemon_argv(root: Path) -> list[str]:
    """dockerd with the flags that leave the host network alone, everything under ``root``."""
    config = root / "daemon.json"
    return [
        "dockerd",
        *DAEMON_FLAGS,
        f"--config-file={config}",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        f"--host=unix://{root / 'docker.sock'}",
        "--log-level=warn",
    ]


def start_private(*, timeout: float = 30.0) -> Daemon:
    """Start the private daemon (or return it if it already runs)."""
    root = docker_dir()
    pid = private_pid()
    if pid and ping(private_host()):
        return Daemon(private_host(), private=True, pid=pid)
    if shutil.which("dockerd") is None:
        raise DockerUnavailableError(
            "dockerd not found: apt-get install -y --no-install-recommends docker.io"
        )
    if os.geteuid() != 0:
        raise DockerUnavailableError("a private Docker daemon needs root (or start your own Docker)")
    root.mkdir(parents=True, exist_ok=True)
    (root / "daemon.json").write_text("{}\n")  # never the machine's /etc/docker/daemon.json
    log = (root / "dockerd.log").open("ab")
    proc = subprocess.Popen(daemon_argv(root), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (root / "dockerd.log").read_text(errors="replace")[-2000:]
            raise DockerUnavailableError(f"dockerd exited with {proc.returncode}:\n{tail}")
        if ping(private_host()):
            _CHILDREN[proc.pid] = proc
            return Daemon(private_host(), private=True, pid=proc.pid)
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise DockerUnavailableError(f"dockerd did not answer within {timeout} s (log: {root / 'dockerd.log'})")


def ensure_daemon() -> Daemon:
    """The user's daemon if one answers, else the private one (started if needed)."""
    return find_daemon() or start_private()


def stop_private(*, timeout: float = 20.0) -> bool:
    """Stop the private daemon's containers, then the daemon; whether one was running."""
    root = docker_dir()
    pid = private_pid()
    if pid is None:
        _unmount_leftovers(root)
        return False
    host = private_host()
    if ping(host):
        env = {**os.environ, "DOCKER_HOST": host}
        ids = subprocess.run(["docker", "ps", "-aq"], env=env, capture_output=True, text=True, check=False)
        if ids.stdout.split():
            subprocess.run(
                ["docker", "rm", "-f", *ids.stdout.split()], env=env, capture_output=True, check=False
            )
    os.kill(pid, signal.SIGTERM)
    child = _CHILDREN.pop(pid, None)
    if child is not None:  # started by this process: wait() reaps it
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout)
    else:
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    _unmount_leftovers(root)
    return True


def _unmount_leftovers(root: Path) -> None:
    """dockerd can leave its network namespace mount behind (exec/netns/default)."""
    with contextlib.suppress(OSError):
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


# -- the stand-in image ------------------------------------------------------------------------


def apt_mirror() -> str:
    """The Debian mirror of this machine's apt sources (deb822 or one-line format)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        with contextlib.suppress(OSError):
            text = path.read_text()
            for match in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
                if match.group(1).rstrip("/").endswith("/debian"):
                    return match.group(1)
            for match in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
                if match.group(1).rstrip("/").endswith("/debian"):
                    return match.group(1)
    return "http://deb.debian.org/debian"


def lambda_python_home() -> Path:
    """The installation prefix of the runtime's Python (pyenv's 3.13 here)."""
    from fraud_devstack.built import pyenv_versions

    env = {**os.environ, "PYENV_VERSION": os.environ.get("PYENV_VERSION") or pyenv_versions()}
    done = subprocess.run(
        [f"python{PYTHON_VERSION}", "-c", "import sys; print(sys.base_prefix)"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise DockerUnavailableError(
            f"python{PYTHON_VERSION} is needed for the stand-in image: {done.stderr}"
        )
    return Path(done.stdout.strip())


def image_inputs(python_home: Path, mirror: str) -> dict[str, str]:
    """Everything the stand-in image is made of; its hash is the image's tag."""
    version = (python_home / "bin" / f"python{PYTHON_VERSION}").resolve()
    return {
        "suite": DEBIAN_SUITE,
        "mirror": mirror,
        "debian_packages": ",".join(DEBIAN_PACKAGES),
        "python": f"{python_home.name} {version.stat().st_size} {int(version.stat().st_mtime)}",
        "runtime_packages": ",".join(RUNTIME_PACKAGES),
        "bootstrap": BOOTSTRAP,
        "env": json.dumps(IMAGE_ENV, sort_keys=True),
        "trim": ",".join(PYTHON_TRIM),
        "recipe": "3",  # bump when build_rootfs changes
    }


def inputs_hash(inputs: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _docker(daemon: Daemon, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], env=daemon.env, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def image_exists(daemon: Daemon, ref: str) -> bool:
    return _docker(daemon, "image", "inspect", ref, check=False).returncode == 0


def build_rootfs(rootfs: Path, *, python_home: Path, mirror: str) -> None:
    """Debian minbase + the runtime's Python under /var/lang + awslambdaric and boto3 under /var/runtime."""
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}", DEBIAN_SUITE,
         str(rootfs), mirror],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    for junk in ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info", "var/cache/apt",
                 "var/lib/apt/lists", "var/log"):  # fmt: skip
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    lang = rootfs / "var" / "lang"
    shutil.copytree(python_home, lang, symlinks=True)
    for part in PYTHON_TRIM:
        shutil.rmtree(lang / part, ignore_errors=True)
    (lang / "lib" / "python3.13" / "site-packages").mkdir()
    runtime = rootfs / "var" / "runtime"
    runtime.mkdir(parents=True)
    subprocess.run(
        [str(python_home / "bin" / f"python{PYTHON_VERSION}"), "-m", "pip", "install", "--quiet",
          "--root-user-action=ignore", "--only-binary=:all:", "--target", str(runtime), *RUNTIME_PACKAGES],
        check=True,
    )  # fmt: skip
    bootstrap = runtime / "bootstrap"
    bootstrap.write_text(BOOTSTRAP)
    bootstrap.chmod(0o755)
    for directory in ("var/task", "opt"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)


def ensure_image(daemon: Daemon, *, quiet: bool = False) -> str:
    """The stand-in tagged as the Lambda base image in the private daemon, built if its inputs
    changed; returns the hash-tagged reference."""
    python_home = lambda_python_home()
    mirror = apt_mirror()
    digest = inputs_hash(image_inputs(python_home, mirror))
    ref = f"{STAND_IN_REPO}:{PYTHON_VERSION}-{digest}"
    if not image_exists(daemon, ref):
        if shutil.which("debootstrap") is None:
            raise DockerUnavailableError("debootstrap not found: apt-get install -y debootstrap")
        started = time.monotonic()
        if not quiet:
            print(f"building the stand-in Lambda image {ref} (Debian {DEBIAN_SUITE} minbase from {mirror}) …")
        work = state_dir() / "image"
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            rootfs = Path(tmp) / "rootfs"
            build_rootfs(rootfs, python_home=python_home, mirror=mirror)
            changes = [f"ENV {k}={v}" for k, v in IMAGE_ENV.items()]
            changes += [
                "WORKDIR /var/task",
                f"LABEL {INPUTS_LABEL}={digest}",
                'ENTRYPOINT ["/var/runtime/bootstrap"]',
            ]
            args = ["docker", "import", *(a for c in changes for a in ("--change", c)), "-", ref]
            with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
                imported = subprocess.run(
                    args, stdin=tar.stdout, env=daemon.env, capture_output=True, text=True
                )
            # (leaving the with-block closes tar's pipe and waits for it)
            if imported.returncode != 0:
                raise DockerUnavailableError(f"docker import failed: {imported.stderr}")
        if not quiet:
            print(
                f"built {ref} in {time.monotonic() - started:.0f} s ({image_size(daemon, ref) / 1e6:.0f} MB)"
            )
        _docker(daemon, "tag", ref, LAMBDA_IMAGE, check=True)
        _remove_older_stand_ins(daemon, keep=ref)
    _docker(daemon, "tag", ref, LAMBDA_IMAGE, check=True)
    return ref


def _remove_older_stand_ins(daemon: Daemon, *, keep: str) -> None:
    """Older stand-ins, and what SAM built on them, are garbage once a new one is tagged."""
    listed = _docker(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}", STAND_IN_REPO, check=False)
    old = [ref for ref in listed.stdout.split() if ref != keep]
    if old:
        _docker(daemon, "rmi", *old, check=False)
    _docker(daemon, "image", "prune", "--force", check=False)


def image_size(daemon: Daemon, ref: str) -> int:
    done = _docker(daemon, "image", "inspect", "--format", "{{.Size}}", ref, check=False)
    return int(done.stdout.strip() or 0)


# -- CLI -----------------------------------------------------------------------------------------


def _up() -> int:
    daemon = ensure_daemon()
    kind = "private daemon (host network only)" if daemon.private else "your Docker daemon"
    print(f"docker: {kind} at {daemon.host}")
    return 0


def _image() -> int:
    daemon = ensure_daemon()
    if not daemon.private:
        print(f"your Docker daemon ({daemon.host}): sam uses the real {LAMBDA_IMAGE}, no stand-in built")
        return 0
    ref = ensure_image(daemon)
    print(f"{LAMBDA_IMAGE} -> {ref} ({image_size(daemon, ref) / 1e6:.0f} MB)")
    return 0


def _status() -> int:
    daemon = find_daemon()
    if daemon is None:
        print("no Docker daemon answers (`python -m fraud_devstack.docker_local up` starts the private one)")
        return 1
    kind = f"private daemon, pid {daemon.pid}" if daemon.private else "your Docker daemon"
    print(f"docker: {kind} at {daemon.host}")
    return 0


def _down() -> int:
    print("stopped the private Docker daemon" if stop_private() else "no private Docker daemon runs")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli_parser("fraud_devstack.docker_local", __doc__)
    parser.add_argument("command", choices=["up", "image", "status", "down"])
    args = parser.parse_args(argv)
    return {"up": _up, "image": _image, "status": _status, "down": _down}[args.command]()


if __name__ == "__main__":
    sys.exit(run_cli(main))
