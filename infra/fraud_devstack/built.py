"""Run a handler from the `sam build` output only, in an isolated interpreter.

The child interpreter is the Lambda runtime's Python version started with ``-I -S`` (no
site-packages, no user site, no PYTHON* variables) and a sys.path of exactly: the function's
build directory, the layer's ``python/`` directory, and a directory holding boto3 (which the
Lambda runtime provides). A missing dependency or a wrong layer layout fails here, not in AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from fraud_devstack.lambda_context import CONTEXT_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
RUNTIME_DEPS = ROOT / ".aws-sam" / "runtime-deps"
LAMBDA_PYTHON = "python3.13"
WIRING = {"fraud_api": "fraud_api.deps", "fraud_stream": "fraud_stream.wiring"}
"""The composition root of each function, whose cached model provider the child times."""

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import importlib
module_name, attr = sys.argv[1].rsplit(".", 1)
module = importlib.import_module(module_name)
handler = getattr(module, attr)
t_import = time.perf_counter() - t0
t1 = time.perf_counter()
wiring = importlib.import_module(sys.argv[2])
wiring.get_model_provider().get()
t_model = time.perf_counter() - t1

class Context:
    @staticmethod
    def get_remaining_time_in_millis():
        return 30000

context = Context()
for name, value in json.loads(sys.argv[3]).items():
    setattr(context, name, value)

responses = []
for path in sys.argv[4:]:
    with open(path) as fh:
        event = json.load(fh)
    responses.append(handler(event, context))
heavy = [m for m in ("sklearn", "pandas", "scipy", "joblib") if m in sys.modules]
print("@@RESULT@@" + json.dumps({"import_s": t_import, "model_load_s": t_model, "cold_init_s": t_import + t_model,
                                 "responses": responses, "heavy_modules": heavy, "python": sys.version,
                                 "sys_path": sys.path}))
"""


def lambda_python() -> str | None:
    """The runtime's interpreter (pyenv's python3.13 is found through PYENV_VERSION)."""
    env = {**os.environ, "PYENV_VERSION": os.environ.get("PYENV_VERSION", "") or pyenv_versions()}
    found = shutil.which(LAMBDA_PYTHON)
    if found is None:
        return None
    ok = subprocess.run([found, "-c", "print(1)"], env=env, capture_output=True, check=False)
    return found if ok.returncode == 0 else None


def pyenv_versions() -> str:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not root.is_dir():
        return ""
    names = sorted(p.name for p in root.iterdir() if p.name.startswith(("3.11", "3.13")))
    return ":".join(names)


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_built_handler(
    function: str, handler: str, events: list[Path], *, env: dict[str, str], timeout: float = 120
) -> dict[str, Any]:
    """Invoke ``handler`` of the built ``function`` with ``events``; return timings and responses."""
    python = lambda_python()
    if python is None:
        raise RuntimeError(
            f"{LAMBDA_PYTHON} not found (the Lambda runtime's Python is needed to load the built wheels)"
        )
    paths = [BUILD / function, BUILD / "FraudCoreLayer" / "python", RUNTIME_DEPS]
    search_path = [str(p) for p in paths]
    boot = f"import sys; sys.path[:0] = {search_path!r}; exec(compile({_CHILD!r}, 'built-child', 'exec'))"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    child_env.update(env)
    child_env["PYENV_VERSION"] = os.environ.get("PYENV_VERSION", "") or pyenv_versions()
    done = subprocess.run(
        [
            python,
            "-I",
            "-S",
            "-c",
            boot,
            handler,
            WIRING[handler.split(".")[0]],
            json.dumps({**CONTEXT_ATTRIBUTES, "function_name": function}),
            *[str(e) for e in events],
        ],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",
    )
    marker = next((line for line in done.stdout.splitlines() if line.startswith("@@RESULT@@")), None)
    if done.returncode != 0 or marker is None:
        raise RuntimeError(f"built {function} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(marker[len("@@RESULT@@") :])
    return result
