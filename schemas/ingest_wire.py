"""The ingest wire: what an agent and the gateway agree on, in one dependency-free module.

The agent (``agent/``) runs inside other people's API servers, so it must not pull in the
gateway's decoder (msgspec) to learn the path it posts to, the headers it sends, the answer
it reads or the limits an event must fit. Both sides import these names from here; the
event's own constraints stay in ``schemas.event`` and a unit test pins that every limit
below equals the one ``IncomingEvent`` enforces.

Consumer ids: the agent sends a keyed BLAKE2b hash of the consumer's id (a raw credential
never leaves the host). The key is one secret per project, drawn by PostgreSQL when the
project is created (``projects.consumer_hash_key``, migration 0120), shown by ``turnstile
keys hash-key`` and given to the agent as ``TURNSTILE_AGENT_CONSUMER_HASH_KEY``; the batch
layer uses the same function to map a raw consumer id to its hash.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Final, TypedDict

# --- the request ------------------------------------------------------------------------
INGEST_BATCH_PATH: Final = "/api/v1/events/batch"
WRITE_KEY_HEADER: Final = "X-Api-Key"
BATCH_ID_HEADER: Final = "X-Turnstile-Batch-Id"
MAX_BATCH_ID: Final = 64
BATCH_ID_PATTERN: Final = rf"^[A-Za-z0-9._:\-]{{1,{MAX_BATCH_ID}}}$"
BATCH_ID_RE: Final = re.compile(BATCH_ID_PATTERN)
BATCH_ID_PROBLEM: Final = f"{BATCH_ID_HEADER}: 1-{MAX_BATCH_ID} of [A-Za-z0-9._:-]"
ENVELOPE_FIELD: Final = "events"  # a body is a JSON array or {"events": [...]}

# --- the answer (202, and 400 when no event was valid) ------------------------------------
ACCEPTED_FIELD: Final = "accepted"
REJECTED_FIELD: Final = "rejected"


class EventRejection(TypedDict):
    """One refused event: its position in the batch and every reason, ``field: reason``."""

    index: int
    errors: list[str]


class BatchAnswer(TypedDict):
    """The 202 body: how many events Kafka holds, and the refused ones."""

    accepted: int
    rejected: list[EventRejection]


def rejected_count(answer: object) -> int:
    """Events refused inside an accepted batch, from the decoded 202 body (0 if unreadable)."""
    rejected = answer.get(REJECTED_FIELD) if isinstance(answer, dict) else None
    return len(rejected) if isinstance(rejected, list) else 0


# --- field limits (characters; equal to schemas.event's, tested) ----------------------------
MAX_EVENT_ID: Final = 64
MAX_METHOD: Final = 16
MAX_PATH: Final = 2048
MAX_ENDPOINT: Final = 512
MAX_API_KEY: Final = 128
MAX_IP: Final = 64
MAX_USER_AGENT: Final = 512
MAX_FUNCTION: Final = 256
MAX_TAGS: Final = 32
MAX_TAG_KEY: Final = 64
MAX_TAG_VALUE: Final = 256
MAX_LATENCY_MS: Final = 86_400_000.0  # one day: anything longer is a clock or unit error
MAX_BYTES: Final = 2**53  # exact in float64 and JSON everywhere
MIN_STATUS_CODE: Final = 100
MAX_STATUS_CODE: Final = 599
IP_CHARS: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:.%"

# --- consumer id hashing ---------------------------------------------------------------------
CONSUMER_HASH_KEY_ENV: Final = "TURNSTILE_AGENT_CONSUMER_HASH_KEY"
CONSUMER_HASH_DIGEST_BYTES: Final = 12  # 96 bits: 24 hex characters in the event
CONSUMER_HASH_LENGTH: Final = 2 * CONSUMER_HASH_DIGEST_BYTES
_HEX: Final = frozenset("0123456789abcdef")


@lru_cache(maxsize=8192)
def hash_consumer_id(value: str, key: str) -> str:
    """Stable keyed 96-bit hash of a consumer id; without the key it cannot be reversed.

    BLAKE2b uses at most 64 bytes of ``key`` (a project's key is 64 hex characters).

    An empty ``key`` is an unkeyed hash, which anyone can recompute from a guessed id:
    callers refuse it unless told otherwise (see ``agent.capture``).
    """
    # surrogatepass: a lone surrogate from a user function must not raise in a request thread.
    data = value.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=CONSUMER_HASH_DIGEST_BYTES,
                           key=key.encode("utf-8", "surrogatepass")[:64]).hexdigest()


def looks_hashed(value: str) -> bool:
    """True when ``value`` has the shape of ``hash_consumer_id``'s output (24 hex chars)."""
    return len(value) == CONSUMER_HASH_LENGTH and set(value) <= _HEX
