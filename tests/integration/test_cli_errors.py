"""Every CLI ends an expected failure with one line saying what was tried and what to do, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fraud_devstack.services import free_port

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env or {**os.environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr.strip()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("fraud_devstack.producer", "--csv", "data/missing.csv"), "data/missing.csv (`make demo` generates"),
        (
            ("fraud_devstack.replay", "--data", "data/missing.parquet"),
            "datasets simulate --out data/missing.parquet",
        ),
        (("fraud_training.train", "--data", "data/missing.csv"), "data/missing.csv"),
    ],
    ids=["producer", "replay", "train"],
)
def test_missing_file_is_one_line(args: tuple[str, ...], says: str) -> None:
    code, err = run(*args)
    assert code == 2
    assert says in err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("module", ["fraud_devstack.producer", "fraud_devstack.local_runner"])
def test_unreachable_broker_is_one_line_within_seconds(module: str) -> None:
    port = free_port()  # nothing listens there
    args = ["--bootstrap-servers", f"127.0.0.1:{port}"] + (
        ["--csv", "README.md"] if "producer" in module else []
    )
    code, err = run(module, *args)
    assert code == 2
    assert f"cannot reach the Kafka broker at 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_missing_aws_credentials_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # No instance-metadata lookup (a link-local address): credentials are simply absent.
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
    )
    code, err = run("fraud_training.registry", "--registry", "s3://no-such-bucket/models", "list", env=env)
    assert code == 2
    assert "no AWS credentials were found" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback() -> None:
    code, err = run("fraud_devstack.producer", "--csv", "data/missing.csv", "--debug")
    assert code == 1
    assert "Traceback" in err
