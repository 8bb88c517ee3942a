"""Data builders for the query API tests (metrics rows with real t-digests, lake files) and
a real server to run an app under."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import uvicorn
from psycopg import sql

from schemas.lake import LAKE_ARROW_SCHEMA, partition_dir


def digest_text(latencies: list[float]) -> str:
    """The tdigest extension's text form, one centroid per distinct value."""
    counts: dict[float, int] = {}
    for v in latencies:
        counts[v] = counts.get(v, 0) + 1
    cents = " ".join(f"({m}, {c})" for m, c in sorted(counts.items()))
    return (f"flags 1 count {len(latencies)} compression 100 centroids {len(counts)} {cents}")


@dataclass
class Metric:
    bucket: datetime
    project_id: str
    api_key: str
    endpoint: str
    method: str
    status_class: int
    latencies: list[float]
    errors: int = 0
    server_errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    extra: dict = field(default_factory=dict)


def insert_metrics(conn, table: str, rows: list[Metric]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} (bucket, project_id, api_key, endpoint, method, status_class, "
            "request_count, error_count, server_error_count, latency_sum, latency_min, "
            "latency_max, latency_digest, bytes_in, bytes_out) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::tdigest, %s, %s)"
            ).format(sql.Identifier(table)),
            [(m.bucket, m.project_id, m.api_key, m.endpoint, m.method, m.status_class,
              len(m.latencies), m.errors, m.server_errors, float(sum(m.latencies)),
              min(m.latencies), max(m.latencies), digest_text(m.latencies), m.bytes_in,
              m.bytes_out) for m in rows],
        )


def write_lake_file(root: Path, project_id: str, events: list[dict], name: str = "part-0"
                    ) -> Path:
    """One Parquet file in the lake's layout (``schemas.lake``), day from the first event."""
    folder = root / partition_dir(events[0]["timestamp"].date(), project_id)
    folder.mkdir(parents=True, exist_ok=True)
    columns = {f.name: [] for f in LAKE_ARROW_SCHEMA}
    for i, e in enumerate(events):
        full = {"received_at": e["timestamp"], "project_id": project_id, "path": e["endpoint"],
                "request_bytes": 10, "response_bytes": 100, "ip": None, "user_agent": "t",
                "country": None, "function": None, "tags": None, "kafka_partition": 0,
                "kafka_offset": i, "batch_id": name, "batch_index": i, **e}
        for k in columns:
            columns[k].append(full[k])
    path = folder / f"{name}.parquet"
    pq.write_table(pa.table(columns, schema=LAKE_ARROW_SCHEMA), path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(app, timeout_s: float = 30.0) -> Iterator[str]:
    """The app under a real uvicorn server on a free port (a thread); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="query-api-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "query API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
