"""One evaluator at a time: a PostgreSQL session advisory lock per round.

Several evaluators may run (one per host, or a restart overlapping the old process). Only
the lock's holder evaluates and sends, so no event is recorded or sent twice; the others
skip the round and the holder does its work. The lock belongs to the round's connection:
it is released when the connection closes, and when a holder is killed (kill -9) its
session ends with its socket, freeing the lock for another process's next round.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg

ROUND_LOCK_KEY: Final = 0x7475726E616C7274  # "turnalrt"


def try_round_lock(conn: psycopg.Connection[Any]) -> bool:
    """Whether this session now holds the round lock (until the connection closes)."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ROUND_LOCK_KEY,)).fetchone()
    return bool(row and row[0])
