"""The one way our command-line tools build their parser and report failures.

Every CLI's ``__main__`` is ``sys.exit(run_cli(main))``: an expected failure (a missing file,
an unreachable Redis, broker or S3 endpoint, missing AWS credentials, an unknown version) ends
in one line on stderr saying what was tried and what to do, and exit status 2 — the traceback
only with ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from fraud_core.errors import FraudCoreError

EXIT_FAILURE = 2


def cli_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """A parser named ``python -m <module>`` whose description keeps the docstring's layout."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of a failure")
    return parser


def explain(exc: BaseException) -> str:
    """One sentence for an expected failure, naming what was tried and what to do."""
    name = type(exc).__name__
    module = type(exc).__module__.split(".")[0]
    if isinstance(exc, FraudCoreError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or exc} does not exist."
    if module in ("botocore", "boto3"):
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return (
                "no AWS credentials were found for the s3:// registry: set AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for LocalStack or "
                "moto), or use a local registry directory."
            )
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
            return f"cannot reach the S3 endpoint ({exc}); is it running? (`make stack-status`)"
        return f"AWS refused the request: {exc}"
    if module == "kafka":
        return (
            f"cannot reach the Kafka broker ({name}: {exc}); is it running? `make stack-status` "
            "shows the local stack, or pass --bootstrap-servers."
        )
    if module.startswith("pydantic") and hasattr(exc, "errors"):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        return f"invalid configuration or input ({problems})"
    if module == "redis":
        return f"cannot use Redis ({name}: {exc}); is it running? (`make stack-status`)"
    return f"{name}: {exc}"


def run_cli(main: Callable[[list[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI's ``main``: expected failures become one line and exit status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if "--debug" in args:
            raise
        print(f"error: {explain(exc)} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_FAILURE
