"""The redis-py client (one per process) and the one mapping of Redis failures to core errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from fraud_core.errors import StoreRejectedError, StoreUnavailableError

if TYPE_CHECKING:
    from redis import Redis
    from redis.credentials import CredentialProvider

T = TypeVar("T")


def redis_call(what: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, with every Redis failure raised as a store error.

    Connection errors and timeouts (outage), OS errors (socket), and a refusal for lack of memory
    (OOM at ``maxmemory``, a read-only replica, a busy script) are StoreUnavailableError: the API
    degrades or answers 503, the stream reports the batch for redelivery. A refusal caused by the
    data itself (a script error, a key of the wrong type) is StoreRejectedError: the stream then
    isolates the record that causes it instead of retrying its neighbours forever.
    """
    from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError

    try:
        return fn(*args)
    except ResponseError as exc:
        message = f"redis {what} failed: {type(exc).__name__}: {exc}"
        # redis-py turns "OOM ..." and "READONLY ..." replies into their own classes (and drops the prefix)
        if isinstance(exc, OutOfMemoryError | ReadOnlyError) or str(exc).startswith(_TRANSIENT_REFUSALS):
            raise StoreUnavailableError(message) from exc
        raise StoreRejectedError(message) from exc
    except (RedisError, OSError) as exc:
        raise StoreUnavailableError(f"redis {what} failed: {type(exc).__name__}: {exc}") from exc


_TRANSIENT_REFUSALS = ("OOM", "READONLY", "BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
"""Error prefixes that say the server cannot take writes right now, whatever the data."""


def redis_client(
    url: str, *, timeout_seconds: float = 0.5, credential_provider: CredentialProvider | None = None
) -> Redis:
    """A redis-py client with short timeouts (imported lazily: ~0.4 s of cold start).

    One retry on a connection error: after a Redis restart the pooled sockets are dead, and the
    first command on each would otherwise fail although the server is back. A credential
    provider, when given, is asked on every new connection (a rotated password is picked up).
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    extra: dict[str, Any] = {}
    if credential_provider is not None:
        extra["credential_provider"] = credential_provider
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.exceptions.ConnectionError],
        health_check_interval=30,
        **extra,
    )


class SecretCredentials:
    """Redis AUTH from a Secrets Manager secret holding the whole Redis URL (``rediss://:token@host``).

    redis-py asks a credential provider on every new connection, and Powertools caches the
    secret for ``max_age_seconds``: a rotated token reaches new connections without a redeploy,
    while established connections stay authenticated. The host comes from the secret once.
    """

    def __init__(self, secret_name: str, *, max_age_seconds: float) -> None:
        self.secret_name = secret_name
        self.max_age_seconds = max_age_seconds

    def url(self) -> str:
        from aws_lambda_powertools.utilities.parameters import get_secret

        return str(get_secret(self.secret_name, max_age=int(self.max_age_seconds))).strip()

    def address(self) -> str:
        """The secret's URL without its credentials."""
        parts = urlsplit(self.url())
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def get_credentials(self) -> tuple[str, ...]:
        """(username, password), (password,), or () when the URL carries no AUTH."""
        parts = urlsplit(self.url())
        if parts.password is None:
            return ()
        password = unquote(parts.password)
        return (unquote(parts.username), password) if parts.username else (password,)


def connect(
    url: str | None, *, secret_name: str | None, timeout_seconds: float, max_age_seconds: float
) -> Redis | None:
    """The process's one Redis client: from a secret (wins) or a URL; None when neither is given."""
    if secret_name:
        credentials = SecretCredentials(secret_name, max_age_seconds=max_age_seconds)
        return redis_client(
            credentials.address(),
            timeout_seconds=timeout_seconds,
            credential_provider=credentials,  # type: ignore[arg-type]
        )
    return None if url is None else redis_client(url, timeout_seconds=timeout_seconds)
