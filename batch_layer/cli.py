"""``turnstile lake …`` and ``turnstile billing …``: the batch layer's commands.

Settings come from the environment (``TURNSTILE_BATCH_*``, ``TURNSTILE_KAFKA_*``,
``TURNSTILE_DATABASE_URL``); heavy modules are imported inside the commands so
``turnstile --help`` stays fast. ``python -m batch_layer.cli`` runs the same commands.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    import psycopg

    from batch_layer.jobs import DayResult
    from batch_layer.settings import BatchSettings

lake_app = typer.Typer(help="The Parquet data lake: writer and retention.", no_args_is_help=True)
billing_app = typer.Typer(help="Nightly exact billing, reconciliation, Stripe export.",
                          no_args_is_help=True)
# Never cut at 80 columns when piped (rich's default width without a terminal).
_console = Console() if Console().is_terminal else Console(width=10_000)

DayOption = Annotated[str, typer.Option("--date", help="UTC day, YYYY-MM-DD.")]


def _settings() -> BatchSettings:
    from batch_layer.settings import BatchSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return BatchSettings()


def _stop_on_signals(stop: threading.Event | None = None,
                     callback: Callable[[], None] | None = None) -> None:
    def handler(signum: int, frame: object) -> None:
        if stop is not None:
            stop.set()
        if callback is not None:
            callback()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not a YYYY-MM-DD date: {text!r}") from exc


@lake_app.command("run")
def lake_run() -> None:
    """Consume the events topic into the lake until SIGTERM (then roll and commit)."""
    from batch_layer.lake import open_lake
    from batch_layer.lake_writer import COMPONENT, LakeWriter
    from schemas.consumer_ops import ComponentOps, kafka_probe

    settings = _settings()
    # Ready while the broker answers; PostgreSQL only holds its dead letters (waited for).
    ops = ComponentOps(COMPONENT, settings.ops_port, settings.database.dsn(),
                       probes={"kafka": kafka_probe(settings.kafka.bootstrap)}).start()
    try:
        writer = LakeWriter(settings, open_lake(settings), ops=ops)
        _stop_on_signals(callback=writer.stop)
        stats = writer.run()
    finally:
        ops.stop()
    _console.print(f"lake writer stopped: {stats}")


@lake_app.command("retention")
def lake_retention() -> None:
    """Delete lake partitions older than the retention (TURNSTILE_BATCH_RETENTION_DAYS)."""
    from batch_layer.lake import apply_retention, open_lake

    settings = _settings()
    deleted = apply_retention(open_lake(settings), datetime.now(UTC).date(),
                              settings.retention_days)
    _console.print(f"deleted {len(deleted)} day(s): {', '.join(map(str, deleted)) or '-'}")


@lake_app.command("files")
def lake_files(day: DayOption) -> None:
    """List a day's committed files (what the billing job reads)."""
    from batch_layer.lake import committed_files, open_lake

    for path in committed_files(open_lake(_settings()), _day(day)):
        _console.print(path, highlight=False)


def _connect(settings: BatchSettings) -> psycopg.Connection:
    """The database, or one ``error:`` line and exit 1 when it cannot be reached."""
    import psycopg

    from schemas.retry import pg_unreachable

    dsn = settings.database.dsn()
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        typer.echo(f"error: {pg_unreachable(dsn, exc)}", err=True)
        raise typer.Exit(1) from None


def _result_json(result: DayResult) -> dict[str, object]:
    out = dataclasses.asdict(result)
    out["day"] = result.day.isoformat()
    out["settles_at"] = result.settles_at.isoformat() if result.settles_at else None
    out["seconds"] = round(result.seconds, 3)
    return out


def _print_result(result: DayResult) -> None:
    from rich.table import Table

    table = Table("day", "lake files", "keys", "requests", "duplicates removed",
                  "reconciled keys", "unexplained", "pending", "dead letters", "seconds")
    table.add_row(result.day.isoformat(), str(result.files), str(result.usage_rows),
                  f"{result.total_requests:,}", f"{result.duplicates_removed:,}",
                  str(result.reconciliation_rows), str(result.unexplained_keys),
                  str(result.pending_keys), str(result.dead_letters), f"{result.seconds:.2f}")
    _console.print(table)
    if result.settles_at is not None:
        _console.print(f"{result.day} is still open: its counts are final after "
                       f"{result.settles_at:%Y-%m-%d %H:%M} UTC; a difference until then is "
                       "pending (the lake lags the stream), re-run the day after that",
                       highlight=False)
    if result.unexplained_keys:
        _console.print(f"{result.unexplained_keys} key(s) with a stream/batch difference the "
                       "known causes do not explain: see /api/v1/billing/usage", highlight=False)


@billing_app.command("run")
def billing_run(
    day: DayOption,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Compute one day: billing_usage and reconciliation (re-running replaces the day).

    Exits 2 when a closed day has keys whose difference is unexplained; an open day's
    differences are pending, not a failure.
    """
    from batch_layer.jobs import run_day
    from batch_layer.lake import open_lake

    settings = _settings()
    with _connect(settings) as conn:
        result = run_day(settings, open_lake(settings), conn, _day(day))
    if as_json:
        typer.echo(json.dumps(_result_json(result), indent=2))
    else:
        _print_result(result)
    if result.unexplained_keys:
        raise typer.Exit(2)


@billing_app.command("schedule")
def billing_schedule(
    once: Annotated[bool, typer.Option(help="Run the last N days now and exit.")] = False,
) -> None:
    """Nightly: re-bill the last N days, export them to Stripe (if on), apply retention."""
    import psycopg

    from batch_layer.lake import apply_retention, open_lake
    from batch_layer.scheduler import nightly, run_forever

    settings = _settings()
    lake = open_lake(settings)
    dsn = settings.database.dsn()

    def job(today: date) -> None:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            nightly(settings, lake, conn, today)  # billing, then the Stripe export if on
        apply_retention(lake, today, settings.retention_days)

    if once:
        job(datetime.now(UTC).date())
        return
    from batch_layer.jobs import COMPONENT
    from schemas.consumer_ops import ComponentOps, postgres_probe
    from schemas.retry import pg_unreachable

    ops = ComponentOps(COMPONENT, settings.ops_port, dsn,
                       probes={"postgres": postgres_probe(dsn)}).start()
    ops.state.state = "running"  # idle until the night: nothing to wait for

    def observed(today: date) -> None:
        try:
            job(today)
        except psycopg.OperationalError:
            ops.dependency_failed("postgres")
            raise
        ops.dependency_ok("postgres")
        ops.success()

    stop = threading.Event()
    _stop_on_signals(stop=stop)
    try:
        run_forever(observed, settings.run_at_utc, stop, transient=(psycopg.OperationalError,),
                    describe=lambda e: f"billing run: {pg_unreachable(dsn, e)}")
    finally:
        ops.stop()


@billing_app.command("export-stripe")
def billing_export_stripe(
    period: Annotated[str, typer.Option("--period", help="Month, YYYY-MM.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write a CSV, send nothing.")] = False,
    out: Annotated[Path, typer.Option(help="CSV path for --dry-run.")] = Path(
        "stripe-meter-events.csv"),
) -> None:
    """Make Stripe bill the period's exact usage: send growth, cancel or flag shrinkage."""
    import stripe

    from batch_layer.stripe_api import StripeKeyMissingError
    from batch_layer.stripe_export import export_period

    settings = _settings()
    key = settings.stripe_api_key
    if (key is None or not key.get_secret_value().strip()) and not dry_run:
        typer.echo("error: TURNSTILE_BATCH_STRIPE_API_KEY is not set (or use --dry-run)",
                   err=True)
        raise typer.Exit(2)
    with _connect(settings) as conn:
        try:
            report = export_period(settings, conn, period,
                                   dry_run_csv=out if dry_run else None)
        except (StripeKeyMissingError, stripe.AuthenticationError) as exc:
            typer.echo(f"error: Stripe refused the key: {exc}"
                       if isinstance(exc, stripe.AuthenticationError) else f"error: {exc}",
                       err=True)
            raise typer.Exit(2) from None
    for line in report.refused:
        typer.echo(f"refused: {line}", err=True)
    _console.print(", ".join(f"{k} {v}" for k, v in vars(report).items() if k != "refused"),
                   highlight=False)
    if dry_run:
        _console.print(f"wrote {report.planned} event(s) to {out}")
    if report.failed or report.refused:
        raise typer.Exit(1)


@billing_app.command("credits")
def billing_credits(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    every: Annotated[bool, typer.Option("--all", help="Also credited and withdrawn.")] = False,
    credited: Annotated[int | None, typer.Option(
        "--mark-credited", help="Record that credit ID was issued in Stripe.")] = None,
) -> None:
    """Usage Stripe billed in excess past its 24-hour cancel window: credit it by hand."""
    from batch_layer.stripe_repository import credits_json, list_credits, mark_credited

    with _connect(_settings()) as conn:
        if credited is not None:
            if not mark_credited(conn, credited):
                typer.echo(f"error: no open credit with id {credited}", err=True)
                raise typer.Exit(1)
            _console.print(f"credit {credited} marked as credited")
            return
        rows = list_credits(conn, None if every else "open")
    if as_json:
        typer.echo(credits_json(rows))
        return
    from rich.table import Table

    table = Table("id", "project", "api_key", "day", "meter", "customer", "credit", "billed",
                  "exact", "status", "flagged at")
    for r in rows:
        table.add_row(*(str(r[k]) for k in ("credit_id", "project_id", "api_key", "day",
                                            "event_name", "stripe_customer_id", "amount",
                                            "billed", "exact", "status")),
                      r["flagged_at"].isoformat(timespec="seconds"))
    _console.print(table)
    if not rows:
        _console.print("no credits to issue")


@billing_app.command("set-tiers")
def billing_set_tiers(
    project: Annotated[str, typer.Argument(help="project_id")],
    rules: Annotated[list[str], typer.Argument(help="PATTERN=TIER, first match wins.")],
) -> None:
    """Replace a project's tiers, e.g. '/v1/search*=premium' '/v1/*=standard'."""
    from batch_layer.billing import TierRule
    from batch_layer.repository import set_tiers

    parsed = []
    for rule in rules:
        pattern, sep, tier = rule.rpartition("=")
        if not sep or not pattern or not tier:
            raise typer.BadParameter(f"expected PATTERN=TIER, got {rule!r}")
        parsed.append(TierRule(pattern=pattern, tier=tier))
    with _connect(_settings()) as conn:
        set_tiers(conn, project, parsed)
    _console.print(f"{project}: {len(parsed)} tier rule(s)")


@billing_app.command("map-customer")
def billing_map_customer(
    project: Annotated[str, typer.Argument(help="project_id")],
    api_key: Annotated[str, typer.Argument(
        help="The consumer as its events carry it: the agent's hash (24 hex characters, "
             "as /api/v1/billing/usage shows it), or the raw id with --raw.")],
    customer: Annotated[str, typer.Argument(help="Stripe customer id, cus_…")],
    raw: Annotated[bool, typer.Option(
        "--raw", help="API_KEY is the raw consumer id (the x-api-key your API saw): hash it "
                      "with the project's consumer hash key, as the agent does.")] = False,
) -> None:
    """Bill a consumer (api_key) of a project to a Stripe customer.

    The agent hashes consumer ids by default, so events (and billing) know a consumer by
    its hash: give that, or the raw id with ``--raw``.
    """
    from batch_layer.repository import consumer_billed, map_customer
    from schemas.ingest_wire import hash_consumer_id, looks_hashed
    from schemas.keystore import consumer_hash_key

    with _connect(_settings()) as conn:
        consumer = api_key
        if raw:
            key = consumer_hash_key(conn, project)
            if key is None:
                typer.echo(f"error: no project {project!r}", err=True)
                raise typer.Exit(1)
            consumer = hash_consumer_id(api_key, key)
        map_customer(conn, project, consumer, customer)
        billed = consumer_billed(conn, project, consumer)
    shown = f"{api_key} (hashed: {consumer})" if raw else consumer
    _console.print(f"{project}/{shown} → {customer}", highlight=False)
    if not billed:
        hint = ("" if raw or looks_hashed(api_key) else
                "; if your agent hashes consumer ids (the default), pass the raw id with --raw")
        _console.print(f"note: no billed day holds consumer {consumer!r} yet{hint}",
                       highlight=False)


app = typer.Typer(no_args_is_help=True, add_completion=False)
app.add_typer(lake_app, name="lake")
app.add_typer(billing_app, name="billing")

if __name__ == "__main__":  # pragma: no cover
    app()
