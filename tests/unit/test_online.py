"""The one mapping of Redis failures: transient refusals retry the batch, data refusals isolate a record."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError, OutOfMemoryError, ReadOnlyError, ResponseError, TimeoutError

from fraud_core.errors import StoreRejectedError, StoreUnavailableError
from fraud_core.online.client import redis_call


def raising(exc: Exception) -> object:
    def fn() -> None:
        raise exc

    return fn


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("refused"),
        TimeoutError("timed out"),
        OSError("socket closed"),
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        ReadOnlyError("You can't write against a read only replica."),
        ResponseError("BUSY Redis is busy running a script."),
    ],
    ids=["connection", "timeout", "os", "oom", "readonly", "busy"],
)
def test_transient_failures_are_unavailable_not_rejected(exc: Exception) -> None:
    with pytest.raises(StoreUnavailableError) as caught:
        redis_call("claim script", raising(exc))  # type: ignore[arg-type]
    assert not isinstance(caught.value, StoreRejectedError)
    assert caught.value.__cause__ is exc


@pytest.mark.parametrize(
    "message",
    [
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "ERR user_script:12: attempt to compare nil",
    ],
)
def test_data_refusals_are_rejections(message: str) -> None:
    with pytest.raises(StoreRejectedError, match="claim script failed"):
        redis_call("claim script", raising(ResponseError(message)))  # type: ignore[arg-type]
