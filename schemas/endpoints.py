"""Endpoint normalisation: turn a raw path into a route template so one route stays one series.

``/users/42/orders/9f1c...`` becomes ``/users/{id}/orders/{id}``. A path segment is an id
when it is a UUID, an integer, a hex string of 8+ characters with a digit, a long base62
token (16+ letters and digits, with both), a prefixed id such as Stripe's ``cus_9s6XKz...``,
an ISO date, or an e-mail address. Everything else, including ``v1`` and words, is kept.
Agents that know the route template (framework middleware) send ``endpoint`` themselves
and it is kept as is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

ID_PLACEHOLDER = "{id}"

_ID_SEGMENT = re.compile(
    r"""
    (?<=/)
    (?:
        [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}  # UUID
      | [0-9]+(?:\.[0-9]+)?                                  # integer (or decimal)
      | (?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{8,}                 # hex id with a digit
      | (?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{16,}  # base62 token
      | [a-z]{2,12}_(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{8,}     # prefixed id: cus_9s6XKz...
      | [0-9]{4}-[0-9]{2}-[0-9]{2}                           # ISO date
      | [^/@]+@[^/@]+\.[^/@]+                                # e-mail address
    )
    (?=/|$)
    """,
    re.VERBOSE,
)


def strip_query(path: str) -> str:
    """Drop the query string and fragment: they never belong to the route."""
    cut = len(path)
    for sep in ("?", "#"):
        i = path.find(sep)
        if i != -1 and i < cut:
            cut = i
    return path[:cut] or "/"


@lru_cache(maxsize=65_536)
def normalise_endpoint(path: str) -> str:
    """Route template for a raw path (query string dropped, ids replaced by ``{id}``)."""
    path = strip_query(path)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return _ID_SEGMENT.sub(ID_PLACEHOLDER, path)


def normalise_endpoints(paths: Iterable[str]) -> list[str]:
    """Batch form: each distinct path is normalised once per call (and cached across calls)."""
    paths = list(paths)
    distinct = {p: normalise_endpoint(p) for p in set(paths)}
    return [distinct[p] for p in paths]
