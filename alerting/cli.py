"""``turnstile alerting``: evaluate alert rules every minute and send notifications."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer


def alerting(
    once: Annotated[bool, typer.Option("--once", help="Run one round and exit.")] = False,
) -> None:
    """Evaluate every enabled alert rule (TURNSTILE_ALERTING_*), notify, repeat."""
    from alerting.service import run_forever, run_round
    from alerting.settings import AlertingSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = AlertingSettings()
    if once:
        stats = run_round(settings)
        typer.echo(f"{stats.rules} rule(s), {stats.events} event(s), "
                   f"{stats.delivered} delivered, {stats.failed} failed")
        return
    from alerting.service import COMPONENT
    from schemas.consumer_ops import ComponentOps, postgres_probe

    dsn = settings.database.dsn()
    ops = ComponentOps(COMPONENT, settings.ops_port, dsn,
                       probes={"postgres": postgres_probe(dsn)}).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        run_forever(settings, ops=ops, stop=stop)
    finally:
        ops.stop()
