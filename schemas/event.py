"""The event, defined once: what an agent sends and what travels through Kafka.

Two shapes of the same event:

- ``IncomingEvent`` is what agents post to the gateway. It accepts the aliases of other
  products (``consumer_id``/``customer_id`` for ``api_key``, ``response_us`` for
  ``latency_ms``) and timestamps as Unix seconds or RFC 3339. Field constraints live in the
  type annotations so msgspec checks them in C, and the slow path that reports every error
  of a bad event reuses the very same annotations (see ``schemas.validation``).
- ``EventRecord`` is the canonical, enriched record on the Kafka topic (format version 1,
  the ``v`` field). Every consumer decodes exactly this type (see ``schemas.codec``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec

HTTP_METHODS: Final = frozenset(
    {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT"}
)
ANONYMOUS_API_KEY: Final = "anonymous"
RECORD_FORMAT_VERSION: Final = 1

MAX_EVENT_ID = 64
MAX_API_KEY = 128
MAX_PATH = 2048
MAX_ENDPOINT = 512
MAX_USER_AGENT = 512
MAX_FUNCTION = 256
MAX_TAGS = 32
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256
MAX_LATENCY_MS = 86_400_000.0  # one day: anything longer is a clock or unit error
MAX_BYTES = 2**53  # exact in float64 and JSON everywhere

EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_ID)]
# Checked against HTTP_METHODS after decoding (a set lookup is cheaper than a regex).
Method = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Path = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PATH)]
Endpoint = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ENDPOINT)]
StatusCode = Annotated[int, msgspec.Meta(ge=100, le=599)]
LatencyMs = Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)]
LatencyUs = Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS * 1000)]
ByteCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_BYTES)]
ApiKey = Annotated[str, msgspec.Meta(max_length=MAX_API_KEY)]
# The character rule is checked by ``schemas.validation`` with ``str.strip`` (a regex run
# from msgspec costs about 1 µs per event, a fifth of the decode); the JSON Schema keeps it.
IP_PATTERN: Final = r"^[0-9A-Fa-f:.%a-zA-Z]*$"
IP_CHARS: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:.%"
Ip = Annotated[str, msgspec.Meta(max_length=64, extra_json_schema={"pattern": IP_PATTERN})]
Country = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2}$")]
Function = Annotated[str, msgspec.Meta(max_length=MAX_FUNCTION)]
TagKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TAG_KEY)]
TagValue = Annotated[str, msgspec.Meta(max_length=MAX_TAG_VALUE)]
Tags = Annotated[dict[TagKey, TagValue], msgspec.Meta(max_length=MAX_TAGS)]
# Unix seconds (int or float) or an RFC 3339 string with an offset.
Timestamp = float | datetime


# gc=False: these structs hold only strings, numbers and a str->str dict, so they can never
# be part of a reference cycle; untracked, a 1,000-event batch no longer drives the cyclic
# garbage collector (which took a tenth of the gateway's main thread).
class IncomingEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False, gc=False):
    """One captured request as an agent sends it. Unknown fields are ignored."""

    event_id: EventId
    timestamp: Timestamp
    method: Method
    path: Path
    status_code: StatusCode
    endpoint: Endpoint | None = None
    latency_ms: LatencyMs | None = None
    response_us: LatencyUs | None = None
    request_bytes: ByteCount = 0
    response_bytes: ByteCount = 0
    api_key: ApiKey | None = None
    consumer_id: ApiKey | None = None
    customer_id: ApiKey | None = None
    ip: Ip | None = None
    user_agent: str | None = None
    country: Country | None = None
    function: Function | None = None
    tags: Tags | None = None


class EventRecord(
    msgspec.Struct,
    kw_only=True,
    tag_field="v",
    tag=RECORD_FORMAT_VERSION,
    omit_defaults=True,
    gc=False,
):
    """The Kafka record body, format version 1 (``"v": 1``). Times are int64 µs UTC."""

    event_id: str
    project_id: str
    timestamp_us: int
    received_at_us: int
    method: str
    path: str
    endpoint: str
    status_code: int
    latency_ms: float
    request_bytes: int = 0
    response_bytes: int = 0
    api_key: str = ANONYMOUS_API_KEY
    ip: str | None = None
    user_agent: str | None = None
    country: str | None = None
    function: str | None = None
    tags: dict[str, str] | None = None
    # The gateway's id of the HTTP batch (the ``turnstile-batch-id`` header's value, in the
    # body so that a consumer that decodes bodies need not read per-record headers), and
    # the event's position in that batch: (batch_id, batch_index) names an event across
    # retries of its batch, which is what the speed layer deduplicates on.
    batch_id: str = ""
    batch_index: int = -1
