"""Hostile-but-valid-JSON requests, unstorable records written straight to the topic, and
a local webhook receiver that counts alert notifications.

Every hostile request carries a few good events beside the bad ones where the gateway
judges per event: those must be accepted and counted (in a project of their own), the bad
ones refused with a 4xx naming the field, and no request may answer 5xx or reset.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import msgspec
from confluent_kafka import Producer

from schemas.codec import record_key
from schemas.event import EventRecord
from schemas.records import encode_event_records
from schemas.settings import KafkaSettings

GOOD_PER_BATCH = 5
BATCH_PATH = "/api/v1/events/batch"


def _good(run: str, n: int, ts: float) -> list[dict[str, Any]]:
    return [{"event_id": f"{run}-good-{i}", "timestamp": ts, "method": "GET",
             "path": f"/v1/items/{i}", "status_code": 200, "latency_ms": 12.5,
             "request_bytes": 10, "response_bytes": 100, "api_key": "hostile-consumer"}
            for i in range(n)]


def _raw_batch(events: list[dict[str, Any]], bad: str) -> bytes:
    """A JSON array of ``events`` and one hand-written ``bad`` event (escapes kept as typed)."""
    return ("[" + ",".join([json.dumps(e) for e in events] + [bad]) + "]").encode()


def hostile_requests(run: str, ts: float) -> list[tuple[str, bytes, int]]:
    """(class, body, good events in it) for each hostile class of issue 10."""
    def bad(fields: str, i: int) -> str:
        return (f'{{"event_id": "{run}-bad-{i}", "timestamp": {ts}, "method": "GET",'
                f' "status_code": 200, "latency_ms": 1, {fields}}}')

    cases = [
        ("NUL in path", bad('"path": "/v1/a\\u0000b"', 0)),
        ("NUL in api_key", bad('"path": "/v1/a", "api_key": "k\\u0000"', 1)),
        ("NUL in a tag", bad('"path": "/v1/a", "tags": {"t": "x\\u0000"}', 2)),
        ("lone surrogate in user_agent", bad('"path": "/v1/a", "user_agent": "ua\\ud800"', 3)),
        ("lone surrogate in path", bad('"path": "/v1/\\udfff"', 4)),
        ("huge integer", bad('"path": "/v1/a", "request_bytes": 1' + "0" * 40, 5)),
        ("huge float", bad('"path": "/v1/a", "response_bytes": 1e400', 6)),
        ("bigint overflow", bad('"path": "/v1/a", "request_bytes": 9223372036854775808', 7)),
    ]
    out = []
    for i, (name, event) in enumerate(cases):
        good = _good(f"{run}-{i}", GOOD_PER_BATCH, ts)
        out.append((name, _raw_batch(good, event), GOOD_PER_BATCH))
    deep = "[" * 20_000 + "]" * 20_000
    out.append(("deep nesting (20,000 levels)",
                _raw_batch([], bad(f'"path": "/v1/a", "tags": {deep}', 9)), 0))
    filler = json.dumps(_good(f"{run}-big", 1, ts)[0] | {"user_agent": "x" * 1000})
    big = ("[" + ",".join([filler] * 6_000) + "]").encode()  # ~6.5 MB > the 5 MB limit
    out.append(("oversized body (6.5 MB)", big, 0))
    return out


def send_hostile(url: str, key: str, run: str, ts: float) -> list[dict[str, Any]]:
    """Post each hostile request; what came back, and whether that is what the contract says."""
    answers = []
    with httpx.Client(timeout=30) as client:
        for name, body, good in hostile_requests(run, ts):
            entry: dict[str, Any] = {"class": name, "good_events": good}
            try:
                resp = client.post(url + BATCH_PATH, content=body, headers={
                    "Content-Type": "application/json", "X-Api-Key": key,
                    "X-Turnstile-Batch-Id": f"{run}-{uuid.uuid4().hex[:8]}"})
            except httpx.HTTPError as exc:
                entry.update(status=None, ok=False, detail=f"{type(exc).__name__}: {exc}")
                answers.append(entry)
                continue
            entry["status"] = resp.status_code
            detail = resp.text[:300]
            entry["detail"] = detail
            if good:
                accepted = resp.json().get("accepted") if resp.status_code == 202 else 0
                entry["accepted"] = accepted
                entry["ok"] = resp.status_code == 202 and accepted == good
            else:
                entry["ok"] = 400 <= resp.status_code < 500
            answers.append(entry)
    return answers


def write_unstorable(bootstrap: str, project: str, run: str, ts_us: int) -> int:
    """Records the gateway would never write, straight to the events topic; returns how many.

    Format v2 records whose one event a sink cannot store (dead-lettered alone), and bytes
    that are no v2 record at all (dead-lettered whole): junk, an empty object, a JSON event
    of the dropped format v1 with an integer beyond int64.
    """
    settings = KafkaSettings()
    base = EventRecord(event_id=f"{run}-x", project_id=project, timestamp_us=ts_us,
                       received_at_us=ts_us, method="GET", path="/v1/p", endpoint="/v1/p",
                       status_code=200, latency_ms=1.0, api_key="poison", batch_id=f"{run}-b",
                       batch_index=0)

    def variant(i: int, **fields: Any) -> EventRecord:
        return msgspec.structs.replace(base, event_id=f"{run}-{i}", batch_index=i, **fields)

    bad_events = [
        variant(0, path="/v1/a\u0000b", endpoint="/v1/a\u0000b"),
        variant(1, api_key="poison\u0000"),
        variant(2, tags={"t": "x\u0000"}),
        variant(3, latency_ms=float("inf")),
    ]
    records = [(rec.key, rec.value, rec.partition) for event in bad_events
               for rec in encode_event_records([event], batch_id=f"{run}-b{event.batch_index}",
                                               partitioner=settings.events_partitions)]
    v1_doc = {"v": 1, "event_id": f"{run}-v1", "project_id": project, "timestamp_us": 2**63 + 5,
              "received_at_us": ts_us, "method": "GET", "path": "/v1/p", "endpoint": "/v1/p",
              "status_code": 200, "latency_ms": 1.0, "request_bytes": 10**30}
    key = record_key(project, "poison")
    records += [(key, value, None) for value in (
        b"\xff\xfe\x00 not a record", b"{}", json.dumps(v1_doc).encode())]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "log_level": 0})
    for key_, value, partition in records:
        if partition is None:
            producer.produce(settings.events_topic, value=value, key=key_)
        else:
            producer.produce(settings.events_topic, value=value, key=key_, partition=partition)
    left = producer.flush(30)
    if left:
        raise RuntimeError(f"{left} unstorable records not delivered to Kafka")
    return len(records)


class WebhookReceiver:
    """Counts alert notifications; the first answer can be held back (a slow receiver)."""

    def __init__(self, hold_first_s: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.first_call = threading.Event()
        self.hold_first_s = hold_first_s
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unparsed": raw[:200].decode("utf-8", "replace")}
                receiver.calls.append({**body, "_received": time.time()})
                first = not receiver.first_call.is_set()
                receiver.first_call.set()
                if first and receiver.hold_first_s:
                    time.sleep(receiver.hold_first_s)
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def sent_twice(self, rule_id: int) -> tuple[int, int]:
        """(firing notifications, extra ones): a rule that stays firing must notify once."""
        firing = [c for c in self.calls if c.get("rule_id") == rule_id
                  and c.get("kind") == "firing"]
        return len(firing), max(0, len(firing) - 1)

    def same_notice_twice(self, rule_id: int) -> int:
        """Repeats of one notice (same rule, kind, ``at``): a receiver could drop these."""
        seen = [(c.get("kind"), c.get("at")) for c in self.calls if c.get("rule_id") == rule_id]
        return len(seen) - len(set(seen))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
