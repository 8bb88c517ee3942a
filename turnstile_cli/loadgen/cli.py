"""``turnstile loadgen``: send seeded traffic to a gateway and write its ground truth.

Heavy imports (numpy, Arrow, httpx) happen inside the command, so ``turnstile --help``
stays fast.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer


def parse_start(value: str, now: float | None = None) -> int:
    """``now``, ``now-90m`` / ``now-2h`` / ``now-3d``, or an ISO 8601 time/date → µs UTC."""
    now_s = time.time() if now is None else now
    if value == "now" or value.startswith("now-"):
        back = 0.0
        if value != "now":
            amount, unit = value[4:-1], value[-1]
            scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(unit)
            if scale is None or not amount.isdigit():
                raise typer.BadParameter(f"--start {value!r}: use now-<n>s|m|h|d")
            back = int(amount) * scale
        return int(now_s - back) * 1_000_000
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"--start {value!r}: not an ISO 8601 time or date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp()) * 1_000_000


def parse_keys(values: list[str]) -> dict[str, str]:
    """``PROJECT=WRITE_KEY`` pairs, one per project."""
    keys = {}
    for value in values:
        project, sep, secret = value.partition("=")
        if not sep or not project or not secret:
            raise typer.BadParameter(f"--key {value!r}: expected PROJECT=WRITE_KEY")
        keys[project] = secret
    return keys


def loadgen(
    url: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8080",
    key: Annotated[list[str] | None, typer.Option(
        "--key", help="PROJECT=WRITE_KEY, once per project; default: the local demo project.",
    )] = None,
    events: Annotated[int, typer.Option(help="Events to generate.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Same seed, same events (byte for byte).")] = 1,
    start: Annotated[str, typer.Option(help="First timestamp: now, now-2h, or ISO 8601.")] = "now",
    event_rate: Annotated[float, typer.Option(
        help="Event-time density: events per second of timestamps.")] = 1_000.0,
    rate: Annotated[float, typer.Option(
        help="Sending rate in events/s; 0 = as fast as possible.")] = 0.0,
    duplicates: Annotated[float, typer.Option(
        help="Fraction of batches sent twice (same batch id and events).")] = 0.0,
    late: Annotated[float, typer.Option(help="Fraction of events sent late.")] = 0.0,
    beyond_share: Annotated[float, typer.Option(
        help="Share of late events older than the speed layer's lateness.")] = 0.5,
    lateness: Annotated[float, typer.Option(
        help="The speed layer's allowed lateness in seconds.")] = 300.0,
    consumers: Annotated[int, typer.Option(help="Distinct api_keys (Zipf-weighted).")] = 200,
    batch_size: Annotated[int, typer.Option(help="Events per request.")] = 1_000,
    in_flight: Annotated[int, typer.Option(help="Concurrent requests (direct).")] = 4,
    via: Annotated[Literal["direct", "agent"], typer.Option(
        help="direct: HTTP batches; agent: through agent.Sender.")] = "direct",
    run_id: Annotated[str, typer.Option(
        help="Prefix of event and batch ids (default lg<seed>).")] = "",
    truth: Annotated[Path | None, typer.Option(
        help="Write the ground truth here (.json or .parquet).")] = None,
) -> None:
    """Send seeded, realistic traffic with a ground truth of what every layer must count."""
    from turnstile_cli.loadgen import DirectSender, TrafficSpec, generate, ground_truth
    from turnstile_cli.loadgen.senders import LoadgenError, send_via_agent

    write_keys = parse_keys(key or [])
    if not write_keys:
        from schemas.settings import DatabaseSettings, StateSettings
        from turnstile_cli.demo_project import DEMO_PROJECT, demo_keys

        write_keys = {DEMO_PROJECT: demo_keys(StateSettings().state_dir,
                                              DatabaseSettings().dsn())["write"]}
    try:
        spec = TrafficSpec(
            seed=seed, events=events, start_us=parse_start(start), events_per_s=event_rate,
            projects=tuple(write_keys), consumers=consumers, batch_size=batch_size,
            duplicate_rate=duplicates, late_rate=late, beyond_share=beyond_share,
            allowed_lateness_s=lateness, in_flight=1 if via == "agent" else in_flight,
            run_id=run_id,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    started = time.perf_counter()
    traffic = generate(spec)
    generated_s = time.perf_counter() - started
    try:
        if via == "agent":
            report = send_via_agent(traffic, url, write_keys, rate or None)
        else:
            report = DirectSender(url, write_keys).send(traffic, rate or None)
    except LoadgenError as exc:
        typer.echo(f"loadgen: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"loadgen: {report.events} events in {report.requests} requests"
               f" ({len(report.duplicate_batch_ids)} duplicated, {report.retries} retries)"
               f" in {report.seconds:.1f} s = {report.events_per_s:,.0f} events/s;"
               f" generated in {generated_s:.1f} s")
    if truth is not None:
        ground = ground_truth(traffic, report.duplicate_batch_ids)
        ground.save(truth)
        typer.echo(f"loadgen: ground truth in {truth}")
