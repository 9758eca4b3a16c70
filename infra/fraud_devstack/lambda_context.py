"""The one stand-in for a Lambda context, for in-process invocations (local runner, demo, tests)."""

from __future__ import annotations

CONTEXT_ATTRIBUTES: dict[str, str | int] = {
    "function_name": "fraud-local",
    "function_version": "$LATEST",
    "memory_limit_in_mb": 1024,
    "invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:fraud-local",
    "aws_request_id": "00000000-0000-0000-0000-000000000000",
    "log_group_name": "/aws/lambda/fraud-local",
    "log_stream_name": "local",
}
"""What Powertools reads from a context (also handed to the built-artifact child as JSON)."""


class LocalLambdaContext:
    """A Lambda-like context: the attributes above and a fixed remaining time."""

    def __init__(self, **overrides: str | int) -> None:
        for name, value in {**CONTEXT_ATTRIBUTES, **overrides}.items():
            setattr(self, name, value)

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000
