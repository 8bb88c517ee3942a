"""``/api/v1/billing/usage`` carries the reconciliation's causes of each day's difference."""

from datetime import date

import psycopg
import psycopg.types.json


def test_billing_usage_returns_each_days_reconciliation_causes(world, stack):
    pid = world.a.project_id
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO billing_usage (project_id, api_key, day, total_requests, "
            "requests_by_tier, error_count, server_error_count, bytes_in, bytes_out) "
            "VALUES (%s, 'cust-causes', %s, 50, %s, 0, 0, 0, 0)",
            (pid, date(2025, 8, 4), psycopg.types.json.Jsonb({"default": 50})))
        # batch 50, stream 47: 5 late - 3 duplicates the stream counted + 1 unexplained
        conn.execute(
            "INSERT INTO reconciliation (project_id, api_key, day, batch_count, stream_count, "
            "difference, late_beyond_lateness, duplicates_removed, duplicates_in_stream, "
            "unexplained, status) VALUES (%s, 'cust-causes', %s, 50, 47, 3, 5, 4, 3, 1, "
            "'unexplained')", (pid, date(2025, 8, 4)))
        conn.execute(
            "INSERT INTO billing_usage (project_id, api_key, day, total_requests, "
            "requests_by_tier, error_count, server_error_count, bytes_in, bytes_out) "
            "VALUES (%s, 'cust-causes', %s, 9, %s, 0, 0, 0, 0)",
            (pid, date(2025, 8, 5), psycopg.types.json.Jsonb({"default": 9})))
    body = world.client.get("/api/v1/billing/usage", headers=world.a.h(),
                            params={"period": "2025-08"}).json()
    (consumer,) = body["consumers"]
    reconciled, not_yet = consumer["days"]
    assert {k: reconciled[k] for k in ("stream_count", "difference", "late_beyond_lateness",
                                       "duplicates_removed", "duplicates_in_stream",
                                       "unexplained")} == {
        "stream_count": 47, "difference": 3, "late_beyond_lateness": 5,
        "duplicates_removed": 4, "duplicates_in_stream": 3, "unexplained": 1}
    assert (reconciled["difference"] == reconciled["late_beyond_lateness"]
            - reconciled["duplicates_in_stream"] + reconciled["unexplained"])
    assert not_yet["reconciliation_status"] is None and not_yet["unexplained"] is None
    csv = world.client.get("/api/v1/billing/usage", headers=world.a.h(),
                           params={"period": "2025-08", "format": "csv"}).text.splitlines()
    assert csv[0].endswith(
        "late_beyond_lateness,duplicates_removed,duplicates_in_stream,unexplained")
    assert csv[1].endswith(",5,4,3,1")


def test_an_open_day_can_be_stored_as_pending(stack):
    with psycopg.connect(stack.database_url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO reconciliation (project_id, api_key, day, batch_count, stream_count, "
            "difference, unexplained, status) VALUES ('p-pending', 'k', %s, 1, 2, -1, -1, "
            "'pending')", (date(2025, 9, 1),))
        conn.execute("DELETE FROM reconciliation WHERE project_id = 'p-pending'")
