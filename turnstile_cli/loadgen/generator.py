"""Generate a whole run's events as columns (numpy / Arrow), then cut them into batches.

Pure and seeded: ``generate(spec)`` draws every column for all events at once, so the same
spec gives the same events, batches, ids and send order, byte for byte. Events are drawn in
time order (Poisson arrivals); each project's events are cut into batches of
``batch_size`` and batches are sent in the order their last event happened. Duplicate
sends and late timestamps are planned here too (see ``lateness.py`` for why the plan can
predict what the speed layer will call late).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from turnstile_cli.loadgen.lateness import plan_lateness
from turnstile_cli.loadgen.profile import COUNTRIES, USER_AGENTS, TrafficSpec

Int64s = npt.NDArray[np.int64]
Ints = npt.NDArray[np.int32]

_UUID_POOL = 4096
_CODES_4XX = np.array([400, 401, 403, 404, 409, 422, 429], dtype=np.int16)
_WEIGHTS_4XX = np.array([0.2, 0.1, 0.05, 0.4, 0.05, 0.1, 0.1])
_CODES_5XX = np.array([500, 502, 503, 504], dtype=np.int16)
_BURST_5XX_RATE = 0.3
_BURST_SLOWDOWN = 3.0


@dataclass(frozen=True)
class Traffic:
    """Every event of a run (indexed by position: time order before lateness) and its sends.

    ``batch_rows[batch_offsets[b]:batch_offsets[b + 1]]`` are the positions of batch ``b``
    (batches numbered in send order); ``sends`` lists the batch of each request in the
    order they are dispatched, a duplicated batch appearing twice.
    """

    spec: TrafficSpec
    event_id: pa.Array
    timestamp_ms: Int64s
    project: Ints
    consumer: Ints
    api_key: pa.Array
    endpoint: Ints
    path: pa.Array
    status: npt.NDArray[np.int16]
    latency_us: Int64s
    request_bytes: Int64s
    response_bytes: Int64s
    country: pa.Array
    ip: pa.Array
    user_agent: pa.Array
    late: npt.NDArray[np.int8]  # 0 on time, 1 late within the lateness, 2 beyond it
    batch_rows: Int64s
    batch_offsets: Int64s
    batch_project: Ints
    batch_ids: list[str]
    sends: Int64s

    def __len__(self) -> int:
        return len(self.timestamp_ms)

    @property
    def batches(self) -> int:
        return len(self.batch_ids)

    def rows_of(self, batch: int) -> Int64s:
        return self.batch_rows[self.batch_offsets[batch]:self.batch_offsets[batch + 1]]

    @property
    def duplicated_batches(self) -> list[int]:
        """Batches sent more than once, in send order of their second copy."""
        seen: set[int] = set()
        again = []
        for b in self.sends.tolist():  # one step per request, not per event
            if b in seen:
                again.append(b)
            seen.add(b)
        return again


def _zipf_weights(n: int, skew: float) -> npt.NDArray[np.float64]:
    w: npt.NDArray[np.float64] = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** skew
    return w / float(w.sum())


def _strings(values: list[str]) -> pa.Array:
    return pa.array(values, type=pa.string())


def _paths(spec: TrafficSpec, rng: np.random.Generator, ep: Ints) -> pa.Array:
    """Raw paths: the template with a numeric or UUID id where it has ``{id}``."""
    parts = [e.template.split("{id}", 1) + [""] for e in spec.endpoints]
    prefix = _strings([p[0] for p in parts]).take(pa.array(ep))
    suffix = _strings([p[1] for p in parts]).take(pa.array(ep))
    n = len(ep)
    numeric = pc.cast(pa.array(rng.zipf(1.3, n) % 1_000_000), pa.string())
    pool = _strings([str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(_UUID_POOL)])
    uuids = pool.take(pa.array(rng.integers(0, _UUID_POOL, n)))
    kinds = [e.id_kind for e in spec.endpoints]
    is_uuid = np.array([k == "uuid" for k in kinds])[ep]
    has_id = np.array([k is not None for k in kinds])[ep]
    ids = pc.if_else(pa.array(is_uuid), uuids, numeric)
    ids = pc.if_else(pa.array(has_id), ids, pa.scalar("", pa.string()))
    return pc.binary_join_element_wise(prefix, ids, suffix, "")


def _bursts(spec: TrafficSpec, rng: np.random.Generator, ep: Ints,
            ts_ms: Int64s) -> npt.NDArray[np.bool_]:
    """Short windows in which one endpoint fails often and slows down."""
    in_burst = np.zeros(len(ep), dtype=np.bool_)
    first, last = int(ts_ms[0]), int(ts_ms[-1])
    for _ in range(spec.error_bursts):
        target = int(rng.integers(0, len(spec.endpoints)))
        start = int(rng.integers(first, max(first + 1, last)))
        length = int(rng.integers(60_000, 180_000))
        in_burst |= (ep == target) & (ts_ms >= start) & (ts_ms < start + length)
    return in_burst


def _statuses(spec: TrafficSpec, rng: np.random.Generator, ep: Ints,
              in_burst: npt.NDArray[np.bool_]) -> npt.NDArray[np.int16]:
    n = len(ep)
    ok = np.array([201 if e.method == "POST" else 204 if e.method == "DELETE" else 200
                   for e in spec.endpoints], dtype=np.int16)[ep]
    p5 = np.where(in_burst, _BURST_5XX_RATE,
                  np.array([e.error_rate_5xx for e in spec.endpoints])[ep])
    p4 = np.array([e.error_rate_4xx for e in spec.endpoints])[ep]
    u = rng.random(n)
    c4 = _CODES_4XX[rng.choice(len(_CODES_4XX), n, p=_WEIGHTS_4XX)]
    c5 = _CODES_5XX[rng.integers(0, len(_CODES_5XX), n)]
    out: npt.NDArray[np.int16] = np.where(u < p5, c5, np.where(u < p5 + p4, c4, ok)).astype(
        np.int16)
    return out


def _batches(spec: TrafficSpec, project: Ints) -> tuple[Int64s, Int64s, Ints]:
    """Each project's events cut into batches, batches ordered by their last event."""
    chunks: list[Int64s] = []
    owners: list[int] = []
    for p in range(len(spec.projects)):
        rows = np.flatnonzero(project == p).astype(np.int64)
        for start in range(0, len(rows), spec.batch_size):
            chunks.append(rows[start:start + spec.batch_size])
            owners.append(p)
    order = np.argsort(np.array([c[-1] for c in chunks]), kind="stable")
    sizes = np.array([len(chunks[i]) for i in order], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    rows_in_order = np.concatenate([chunks[i] for i in order]).astype(np.int64)
    return rows_in_order, offsets, np.asarray(owners, dtype=np.int32)[order]


def _sends(spec: TrafficSpec, rng: np.random.Generator, n_batches: int) -> Int64s:
    """Send order: every batch once, plus duplicates re-sent ``in_flight``+ sends later.

    So a retry never overlaps its first attempt: by then the first attempt has completed
    (see ``senders.py``: a send waits for the one ``in_flight`` places before it).
    """
    if spec.duplicate_rate <= 0:
        return np.arange(n_batches, dtype=np.int64)
    n_dup = min(n_batches, max(1, round(spec.duplicate_rate * n_batches)))
    dups = np.sort(rng.choice(n_batches, n_dup, replace=False))
    keys = np.concatenate([np.arange(n_batches, dtype=np.float64),
                           dups + spec.in_flight + rng.integers(0, 4, n_dup) + 0.5])
    batch = np.concatenate([np.arange(n_batches), dups]).astype(np.int64)
    sends: Int64s = batch[np.argsort(keys, kind="stable")]
    return sends


def generate(spec: TrafficSpec) -> Traffic:
    """All events of ``spec``, their batches and their send order."""
    rng = np.random.default_rng(spec.seed)
    n = spec.events
    gaps_ms = rng.exponential(1000.0 / spec.events_per_s, n)
    ts_ms = (spec.start_us // 1000 + np.floor(np.cumsum(gaps_ms))).astype(np.int64)
    n_ep = len(spec.endpoints)
    ep = rng.choice(n_ep, n, p=_zipf_weights(n_ep, spec.endpoint_skew)).astype(np.int32)
    consumer = rng.choice(spec.consumers, n,
                          p=_zipf_weights(spec.consumers, spec.consumer_skew)).astype(np.int32)
    consumer_project = (np.arange(spec.consumers) % len(spec.projects)).astype(np.int32)
    project = consumer_project[consumer]
    take = pa.array(consumer)
    api_key = _strings([f"cust-{i:05d}" for i in range(spec.consumers)]).take(take)
    ip = _strings([f"198.51.{i // 256 % 256}.{i % 256}"
                   for i in range(spec.consumers)]).take(take)
    user_agent = _strings([USER_AGENTS[i % len(USER_AGENTS)]
                           for i in range(spec.consumers)]).take(take)
    codes, shares = zip(*COUNTRIES, strict=True)
    country = _strings(list(codes)).take(pa.array(
        rng.choice(len(codes), n, p=np.asarray(shares) / sum(shares))))
    path = _paths(spec, rng, ep)
    in_burst = _bursts(spec, rng, ep, ts_ms)
    status = _statuses(spec, rng, ep, in_burst)
    medians = np.log(np.array([e.median_ms for e in spec.endpoints]))[ep]
    sigmas = np.array([e.sigma for e in spec.endpoints])[ep]
    latency_ms = rng.lognormal(medians, sigmas) * np.where(in_burst, _BURST_SLOWDOWN, 1.0)
    latency_us = np.round(np.minimum(latency_ms, 600_000.0) * 1000).astype(np.int64)
    writes = np.array([e.method in ("POST", "PUT") for e in spec.endpoints])[ep]
    request_bytes = np.where(writes, rng.lognormal(np.log(700), 0.8, n),
                             rng.integers(0, 400, n)).astype(np.int64)
    success = np.log(np.maximum(1, [e.response_bytes for e in spec.endpoints]))[ep]
    empty = np.array([e.response_bytes == 0 for e in spec.endpoints])[ep]
    response_bytes = np.where(status < 400, np.where(empty, 0, rng.lognormal(success, 0.6)),
                              rng.integers(60, 400, n)).astype(np.int64)
    rows, offsets, owners = _batches(spec, project)
    sends = _sends(spec, rng, len(owners))
    late, ts_ms = plan_lateness(spec, rng, ts_ms, consumer, rows, offsets, sends)
    ids = pc.binary_join_element_wise(f"{spec.id_prefix}-e",
                                      pc.cast(pa.array(np.arange(n)), pa.string()), "")
    return Traffic(
        spec=spec, event_id=ids, timestamp_ms=ts_ms, project=project, consumer=consumer,
        api_key=api_key, endpoint=ep, path=path, status=status, latency_us=latency_us,
        request_bytes=request_bytes, response_bytes=response_bytes, country=country, ip=ip,
        user_agent=user_agent, late=late, batch_rows=rows, batch_offsets=offsets,
        batch_project=owners, batch_ids=[f"{spec.id_prefix}-b{b}" for b in range(len(owners))],
        sends=sends,
    )



