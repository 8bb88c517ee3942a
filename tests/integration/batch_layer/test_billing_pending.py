"""A day still receiving traffic is pending, not unexplained; the CLI prints tables or JSON."""

import json
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from batch_layer.cli import app
from batch_layer.jobs import run_day
from batch_layer.lake import open_lake
from batch_layer.reconcile import settles_at
from tests.integration.batch_layer.conftest import drain, produce, writer_settings
from tests.integration.batch_layer.test_billing import plant_stream, setup_projects
from tests.unit.batch_layer.fixtures import DAY, make_events


def _lagging_lake_day(stack, db, fresh_topic, tmp_path):
    """DAY in the lake and the stream, with the stream 3 events ahead for key-0."""
    setup_projects(db)
    topic = fresh_topic(partitions=1)
    events = make_events(200, seed=41, projects=("acme",), keys=2)
    produce(stack.kafka_bootstrap, topic, events)
    settings = writer_settings(stack, topic, str(tmp_path / "lake"))
    lake = open_lake(settings)
    drain(settings, lake, 1)
    plant_stream(db, events, set())
    db.execute("UPDATE metrics_1m SET request_count = request_count + 3"
               " WHERE project_id = 'acme' AND api_key = 'key-0' AND bucket::date = %s", (DAY,))
    db.execute("DELETE FROM late_events WHERE bucket::date = %s", (DAY,))
    return settings, lake


def _statuses(db):
    return dict(db.execute("SELECT api_key, status FROM reconciliation WHERE day = %s"
                           " AND project_id = 'acme'", (DAY,)).fetchall())


def test_an_open_day_is_pending_and_the_same_day_closed_is_unexplained(stack, db, fresh_topic,
                                                                       tmp_path):
    settings, lake = _lagging_lake_day(stack, db, fresh_topic, tmp_path)
    evening = datetime.combine(DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=23)
    opened = run_day(settings, lake, db, DAY, now=evening)
    assert (opened.unexplained_keys, opened.pending_keys) == (0, 1)
    assert opened.settles_at == settles_at(DAY, settings.roll_seconds)
    assert _statuses(db) == {"key-0": "pending", "key-1": "ok"}

    closed = run_day(settings, lake, db, DAY, now=opened.settles_at + timedelta(seconds=1))
    assert (closed.unexplained_keys, closed.pending_keys, closed.settles_at) == (1, 0, None)
    assert _statuses(db) == {"key-0": "unexplained", "key-1": "ok"}


def test_billing_run_prints_a_table_or_json_never_a_repr(stack, db, fresh_topic, tmp_path,
                                                          monkeypatch):
    settings, _ = _lagging_lake_day(stack, db, fresh_topic, tmp_path)
    monkeypatch.setenv("TURNSTILE_DATABASE_URL", stack.database_url)
    monkeypatch.setenv("TURNSTILE_LAKE_URI", settings.lake.uri)
    runner = CliRunner()
    shown = runner.invoke(app, ["billing", "run", "--date", DAY.isoformat()])
    assert shown.exit_code == 2, shown.output  # a closed day with an unexplained key
    assert "DayResult(" not in shown.output
    assert "unexplained" in shown.output and "requests" in shown.output
    assert max(len(line) for line in shown.output.splitlines()) > 80  # not cut when piped
    as_json = runner.invoke(app, ["billing", "run", "--date", DAY.isoformat(), "--json"])
    assert as_json.exit_code == 2
    result = json.loads(as_json.stdout)
    assert result["day"] == DAY.isoformat() and result["unexplained_keys"] == 1
    assert result["total_requests"] == 200 and result["settles_at"] is None


def test_billing_run_of_today_exits_0_with_a_pending_key(stack, db, monkeypatch, tmp_path):
    today = datetime.now(UTC).date()
    db.execute("INSERT INTO projects (project_id, name) VALUES ('pending-co', 'p')"
               " ON CONFLICT DO NOTHING")
    db.execute("DELETE FROM metrics_1m WHERE project_id = 'pending-co'")
    db.execute("INSERT INTO metrics_1m (bucket, project_id, api_key, endpoint, method,"
               " status_class, request_count) VALUES (%s, 'pending-co', 'k', '/x', 'GET', 2, 5)",
               (datetime.combine(today, datetime.min.time(), tzinfo=UTC),))
    monkeypatch.setenv("TURNSTILE_DATABASE_URL", stack.database_url)
    monkeypatch.setenv("TURNSTILE_LAKE_URI", str(tmp_path / "empty-lake"))
    try:
        out = CliRunner().invoke(app, ["billing", "run", "--date", today.isoformat(), "--json"])
        assert out.exit_code == 0, out.output  # the lake has not caught up: pending
        result = json.loads(out.stdout)
        assert result["pending_keys"] >= 1 and result["unexplained_keys"] == 0
        assert result["settles_at"] is not None
        status = db.execute("SELECT status FROM reconciliation WHERE project_id = 'pending-co'"
                            " AND day = %s", (today,)).fetchone()
        assert status == ("pending",)
    finally:
        db.execute("DELETE FROM metrics_1m WHERE project_id = 'pending-co'")
        db.execute("DELETE FROM reconciliation WHERE project_id = 'pending-co'")


def test_export_stripe_with_an_empty_key_is_one_line(monkeypatch):
    monkeypatch.setenv("TURNSTILE_BATCH_STRIPE_API_KEY", "")
    out = CliRunner().invoke(app, ["billing", "export-stripe", "--period", "2026-11"])
    assert out.exit_code == 2
    assert out.output.strip().splitlines() == [
        "error: TURNSTILE_BATCH_STRIPE_API_KEY is not set (or use --dry-run)"]


def test_an_unreachable_database_is_one_line(monkeypatch):
    monkeypatch.setenv("TURNSTILE_DATABASE_URL", "postgresql://u@127.0.0.1:9/none")
    out = CliRunner().invoke(app, ["billing", "credits"])
    assert out.exit_code == 1
    (line,) = out.output.strip().splitlines()
    assert line.startswith("error: PostgreSQL unreachable at 127.0.0.1:9")
