"""Late timestamps whose fate in the speed layer is known in advance.

The speed layer judges lateness per Kafka partition (``speed_layer/windows.py``): with ``M``
the newest event time the partition has seen so far (through the record itself) and ``L``
the allowed lateness, a record is late beyond the lateness when
``minute(ts) + 1 min <= M - L``. We do not know which consumers share a partition, but we
know bounds on ``M`` from the send order, because the senders keep at most ``in_flight``
requests open and a request starts only once the one ``in_flight`` places earlier has
completed (202: all its records are in Kafka):

- every batch sent ``in_flight`` places or more before this one is already in the
  partition, so ``M`` is at least the newest earlier event *of the same consumer* (its
  records always go to the same partition) from those batches. A timestamp 2 min + ``L``
  older than that is late beyond the lateness whatever else the partition holds;
- no batch sent ``in_flight`` places or more after this one can be ahead of it, so ``M`` is
  at most the newest event of the batches up to ``in_flight - 1`` places later. A
  timestamp no older than that minus ``L`` is within the lateness, whatever the mix.

Late events that cannot be placed with certainty (a consumer's very first events) stay on
time, so the ground truth is exact rather than nearly right. The second bound assumes the
topic holds no newer event times than this run's (a fresh topic, or traffic from before).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from turnstile_cli.loadgen.profile import TrafficSpec

Int64s = npt.NDArray[np.int64]
ON_TIME, LATE_WITHIN, LATE_BEYOND = 0, 1, 2
_MINUTE_MS = 60_000
_WITHIN_MIN_BEHIND_MS = 30_000  # a late-within event is at least this much behind its slot
_BEYOND_EXTRA_MS = (2 * _MINUTE_MS, 15 * _MINUTE_MS)  # how much older than needed


def _original_slots(sends: Int64s, n_batches: int) -> Int64s:
    """The send slot of each batch's first copy."""
    slots = np.full(n_batches, -1, dtype=np.int64)
    first = np.unique(sends, return_index=True)
    slots[first[0]] = first[1]
    return slots


def plan_lateness(spec: TrafficSpec, rng: np.random.Generator, ts_ms: Int64s,
                  consumer: npt.NDArray[np.int32], rows: Int64s, offsets: Int64s,
                  sends: Int64s) -> tuple[npt.NDArray[np.int8], Int64s]:
    """Pick late events and move their timestamps back; returns (late kind, timestamps)."""
    n = len(ts_ms)
    late = np.zeros(n, dtype=np.int8)
    m = round(spec.late_rate * n)
    if m == 0:
        return late, ts_ms
    n_batches = len(offsets) - 1
    batch_of = np.empty(n, dtype=np.int64)
    batch_of[rows] = np.repeat(np.arange(n_batches), np.diff(offsets))
    slots = _original_slots(sends, n_batches)  # increasing with the batch number
    c = spec.in_flight
    surely_before = np.searchsorted(slots, slots - c, side="right") - 1
    maybe_before = np.searchsorted(slots, slots + c - 1, side="right") - 1
    newest_through = np.maximum.accumulate(ts_ms[rows[offsets[1:] - 1]])

    chosen = np.sort(rng.choice(n, m, replace=False))
    wants_beyond = rng.random(m) < spec.beyond_share
    lateness_ms = int(spec.allowed_lateness_s * 1000)
    new_ts = ts_ms.copy()

    # Beyond: older than the consumer's newest event in batches surely in Kafka already.
    on_time = np.ones(n, dtype=np.bool_)
    on_time[chosen] = False
    ref_rows = np.flatnonzero(on_time)
    ref_key = consumer[ref_rows].astype(np.int64) * n_batches + batch_of[ref_rows]
    order = np.lexsort((ref_rows, ref_key))
    ref_key, ref_rows = ref_key[order], ref_rows[order]
    cand = chosen[wants_beyond]
    limit = surely_before[batch_of[cand]]
    at = np.searchsorted(ref_key, consumer[cand].astype(np.int64) * n_batches + limit,
                         side="right") - 1
    safe_at = np.maximum(at, 0)
    found = ((limit >= 0) & (at >= 0) & (len(ref_rows) > 0)
             & (ref_key[safe_at] // n_batches == consumer[cand]))
    beyond = cand[found]
    back = lateness_ms + rng.integers(*_BEYOND_EXTRA_MS, len(beyond))
    new_ts[beyond] = ts_ms[ref_rows[safe_at[found]]] - back
    late[beyond] = LATE_BEYOND

    # Within: no older than the newest event that may be ahead of it, minus the lateness.
    within = np.sort(np.concatenate([chosen[~wants_beyond], cand[~found]]))
    lowest = newest_through[maybe_before[batch_of[within]]] - lateness_ms + 1000
    highest = ts_ms[within] - _WITHIN_MIN_BEHIND_MS
    fits = highest > lowest
    within, lowest, highest = within[fits], lowest[fits], highest[fits]
    new_ts[within] = rng.integers(lowest, highest)
    late[within] = LATE_WITHIN
    return late, new_ts
