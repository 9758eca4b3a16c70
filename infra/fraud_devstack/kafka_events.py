"""Build the event a Lambda Kafka event-source mapping would send, from plain records.

The local runner wraps what it consumed in it, the demo and the benchmarks invoke the stream
handler with it, and the tests build their variants with it.
"""

from __future__ import annotations

from typing import Any

import pybase64

# A syntactically valid ARN of no real account: MSK events carry one, self-managed ones don't.
EXAMPLE_MSK_ARN = "arn:aws:kafka:us-east-1:000000000000:cluster/fraud/00000000-0000-0000-0000-000000000000-1"


def build_event(
    records: list[dict[str, Any]],
    *,
    event_source: str = "SelfManagedKafka",
    bootstrap_servers: str = "127.0.0.1:9092",
) -> dict[str, Any]:
    """The event for these records, grouped by ``topic-partition``.

    Each record: ``topic, partition, offset, timestamp, key (bytes|None), value (bytes), headers``.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        grouped.setdefault(f"{r['topic']}-{r['partition']}", []).append(
            {
                "topic": r["topic"],
                "partition": r["partition"],
                "offset": r["offset"],
                "timestamp": r.get("timestamp", 0),
                "timestampType": "CREATE_TIME",
                "key": pybase64.b64encode(r["key"]).decode() if r.get("key") is not None else None,
                "value": pybase64.b64encode(r["value"]).decode(),
                "headers": [{k: list(v)} for k, v in (r.get("headers") or {}).items()],
            }
        )
    event: dict[str, Any] = {"eventSource": event_source, "records": grouped}
    if event_source == "aws:kafka":
        event["eventSourceArn"] = EXAMPLE_MSK_ARN
    else:
        event["bootstrapServers"] = bootstrap_servers
    return event
