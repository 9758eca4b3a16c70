"""Load the canonical Lambda events of `events/` (shared with `sam local invoke -e`) and build variants."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

from fraud_devstack.lambda_context import LocalLambdaContext

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def with_json_body(event: dict[str, Any], body: Any, *, base64_encode: bool = False) -> dict[str, Any]:
    """A copy of an API Gateway event carrying another JSON body."""
    out = copy.deepcopy(event)
    text = body if isinstance(body, str) else json.dumps(body)
    out["body"] = base64.b64encode(text.encode()).decode() if base64_encode else text
    out["isBase64Encoded"] = base64_encode
    return out


def with_headers(event: dict[str, Any], **headers: str) -> dict[str, Any]:
    out = copy.deepcopy(event)
    out["headers"].update({k.replace("_", "-"): v for k, v in headers.items()})
    return out


def lambda_context() -> Any:
    """The one Lambda context stand-in (`fraud_devstack.lambda_context`), typed loosely for handlers."""
    return LocalLambdaContext(function_name="fraud-test")
