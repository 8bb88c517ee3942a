"""SQL shared by the writers of metrics_1m/1h/1d: a new value of a bucket replaces the old.

Every writer upserts the *full* value of a bucket, never a delta, so replays and re-emits
are idempotent; this clause is that rule, spelled once.
"""

from typing import Final

METRICS_REPLACE_ON_CONFLICT: Final = """
ON CONFLICT (project_id, bucket, api_key, endpoint, method, status_class) DO UPDATE SET
    request_count = EXCLUDED.request_count,
    error_count = EXCLUDED.error_count,
    server_error_count = EXCLUDED.server_error_count,
    latency_sum = EXCLUDED.latency_sum,
    latency_min = EXCLUDED.latency_min,
    latency_max = EXCLUDED.latency_max,
    latency_digest = EXCLUDED.latency_digest,
    bytes_in = EXCLUDED.bytes_in,
    bytes_out = EXCLUDED.bytes_out,
    updated_at = EXCLUDED.updated_at"""
