"""The last error line of a log, as ``stack status`` shows it."""

import pytest

from turnstile_cli.stack.logs import MAX_LINE, last_error_in, last_error_line, tail_lines

pytestmark = pytest.mark.unit


def test_the_last_error_looking_line_wins_and_info_lines_do_not_count():
    lines = ["2026 INFO started", "Traceback (most recent call last):", '  File "x.py"',
             "psycopg.OperationalError: connection refused", "2026 INFO 0 errors so far", ""]
    assert last_error_line(lines) == "psycopg.OperationalError: connection refused"


def test_no_error_gives_none_and_a_long_line_is_shortened():
    assert last_error_line(["INFO all good", "listening on 8080"]) is None
    assert len(last_error_line(["ERROR " + "x" * 1000])) == MAX_LINE


def test_only_the_end_of_a_big_log_is_read(tmp_path):
    log = tmp_path / "big.log"
    log.write_text("ERROR early\n" + "ok line\n" * 20_000 + "FATAL late\nok\n")
    assert tail_lines(log, 1024)[-2:] == ["FATAL late", "ok"]
    assert last_error_in(log) == "FATAL late"
    assert last_error_in(tmp_path / "missing.log") is None
