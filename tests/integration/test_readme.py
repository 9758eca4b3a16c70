"""The README's Quickstart, run word for word in a fresh copy of the repository.

Each command must succeed, and every `#>` line under it must appear in what it printed (numbers
may differ: a model retrained elsewhere scores differently; `…` ends what is compared).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fraud_devstack.services import port_is_free

ROOT = Path(__file__).resolve().parents[2]
API_PORT = 8000


def quickstart() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) in order, from the first bash block under ## Quickstart."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Quickstart\n.*?```bash\n(.*?)```", readme, re.S | re.M)
    assert match, "README has no Quickstart bash block"
    steps: list[tuple[str, list[str]]] = []
    for line in match.group(1).splitlines():
        if line.startswith("#> "):
            steps[-1][1].append(line[3:])
        elif line.strip() and not line.startswith("#"):
            steps.append((line, []))
    return steps


def pattern(expected: str) -> re.Pattern[str]:
    """The expected line up to its first ellipsis, any number standing for any number, any run of
    white space for any other."""
    head = re.split(r"…|\.\.\.", expected)[0].rstrip()
    parts = re.split(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", head)
    escaped = (re.escape(p).replace(r"\ ", r"\s+") for p in parts)  # the console may wrap long lines
    return re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?".join(escaped))


def copy_of_repository(target: Path) -> Path:
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # keeps mtimes: make sees .venv as up to date
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def test_quickstart_works_word_for_word(tmp_path: Path) -> None:
    if not port_is_free(API_PORT):
        pytest.skip(f"port {API_PORT} is taken: the Quickstart's curl lines could not run as written")
    steps = quickstart()
    assert [c.split()[0] for c, _ in steps if c.startswith("make")], "the Quickstart runs make targets"
    repo = copy_of_repository(tmp_path / "fraud-detection")
    # A user's shell: none of the test session's settings, nor the outer make's (`make test`).
    drop = ("FRAUD_", "AWS_", "POWERTOOLS_", "MAKE", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    transcript: list[str] = []
    try:
        for command, expected in steps:
            if command.startswith(("git clone", "cd ")):
                continue  # the copy above stands for the clone
            done = subprocess.run(
                ["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True, timeout=600
            )
            output = done.stdout + done.stderr
            transcript.append(f"$ {command}\n{output}")
            assert done.returncode == 0, "\n".join(transcript)[-4000:]
            for line in expected:
                assert pattern(line).search(output), f"{command!r} did not print {line!r}:\n{output[-3000:]}"
    finally:
        subprocess.run(["make", "--no-print-directory", "stack-down"], cwd=repo, env=env, capture_output=True)
