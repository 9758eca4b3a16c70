"""The console's session cookie and CSRF token: an HMAC-signed value, no server-side state (it
works the same on every Lambda instance) and no dependency beyond the standard library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass

import orjson

COOKIE = "fraud_console"
_CONTEXT = b"fraud-console-session\x00"


@dataclass(frozen=True, slots=True)
class Session:
    principal: str
    """Who logged in: the API key's fingerprint, or ``anonymous`` when the API has no key."""
    author: str
    """Who labels are recorded as (the labels key's fingerprint, as `POST /v1/labels` records it)."""
    can_label: bool
    csrf: str
    """Echoed by every form that changes something; an attacker's page cannot read it."""
    expires: float

    @classmethod
    def new(
        cls, *, principal: str, author: str, can_label: bool, hours: float, now: float | None = None
    ) -> Session:
        now = time.time() if now is None else now
        return cls(principal, author, can_label, secrets.token_urlsafe(24), now + hours * 3600)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, _CONTEXT + payload.encode(), hashlib.sha256).digest())


def sign(session: Session, secret: bytes) -> str:
    payload = _b64(orjson.dumps(asdict(session)))
    return f"{payload}.{_mac(secret, payload)}"


def verify(cookie: str | None, secret: bytes, *, now: float | None = None) -> Session | None:
    """The session in ``cookie`` when its signature checks out and it has not expired, else None."""
    if not cookie or cookie.count(".") != 1:
        return None
    payload, mac = cookie.split(".")
    if not hmac.compare_digest(mac.encode(), _mac(secret, payload).encode()):
        return None
    try:
        session = Session(**orjson.loads(_unb64(payload)))
    except (ValueError, TypeError):
        return None
    if session.expires < (time.time() if now is None else now):
        return None
    return session


def csrf_ok(session: Session, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(token.encode(), session.csrf.encode())


def derive_secret(api_key: str) -> bytes:
    """A session secret derived from the API key: every instance agrees, a rotated key ends sessions."""
    return hmac.new(api_key.encode(), b"fraud-console-session-secret", hashlib.sha256).digest()


def safe_next(target: str | None) -> str:
    """Where to go after login: a console path on this site, never another origin."""
    if not target or not target.startswith("/console") or target.startswith("//") or "\\" in target:
        return "/console"
    return target
