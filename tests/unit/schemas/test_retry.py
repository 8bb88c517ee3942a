import logging
import threading

import psycopg
import pytest

from schemas.retry import Backoff, call_until_done, pg_address, pg_unreachable


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_success():
    b = Backoff(first=0.5, cap=30.0)
    assert [b.next_delay() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    b.reset()
    assert b.next_delay() == 0.5


def test_an_unreachable_postgres_is_one_line_naming_host_port_and_cause():
    try:
        psycopg.connect("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)
    except psycopg.OperationalError as exc:
        line = pg_unreachable("postgresql://nobody:secret@127.0.0.1:1/none", exc)
    assert line == "PostgreSQL unreachable at 127.0.0.1:1 (connection refused)"
    assert pg_address("host=/run/pg port=5433 dbname=x") == "/run/pg:5433"


def test_call_until_done_logs_each_attempt_and_returns_once_it_works(caplog):
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("refused")
        return "done"

    with caplog.at_level(logging.INFO):
        got = call_until_done(flaky, transient=(ConnectionError,), log=logging.getLogger("t"),
                              describe=lambda e: f"X unreachable ({e})",
                              backoff=Backoff(first=0.01))
    assert got == "done"
    assert [r.getMessage() for r in caplog.records][:2] == [
        "X unreachable (refused); retrying in 0.0 s", "X unreachable (refused); retrying in 0.0 s"]


def test_call_until_done_gives_up_only_when_stopped_and_never_on_other_errors():
    stop = threading.Event()
    stop.set()
    with pytest.raises(ConnectionError):
        call_until_done(lambda: (_ for _ in ()).throw(ConnectionError("x")),
                        transient=(ConnectionError,), describe=str,
                        log=logging.getLogger("t"), stop=stop)
    with pytest.raises(KeyError):
        call_until_done(lambda: {}["missing"], transient=(ConnectionError,), describe=str,
                        log=logging.getLogger("t"))
