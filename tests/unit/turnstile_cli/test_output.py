import pytest
from rich.table import Table
from typer.testing import CliRunner

from turnstile_cli.output import PIPE_WIDTH, console

pytestmark = pytest.mark.unit


def test_a_piped_console_never_cuts_a_table_cell(capsys):
    out = console()  # pytest captures stdout: not a terminal
    assert out.width == PIPE_WIDTH
    table = Table("key_id", "kind", "name", "prefix", "created", "revoked")
    key_id = "key_" + "0123456789abcdef" * 2
    table.add_row(key_id, "write", "a name long enough to push the table past 80 columns",
                  "tsk_w_abcdef…", "2026-12-02 15:40", "")
    out.print(table)
    printed = capsys.readouterr().out
    assert key_id in printed and max(map(len, printed.splitlines())) > 80


def test_keys_commands_offer_json():
    from turnstile_cli.main import app

    for command in (["keys", "list", "--help"], ["keys", "create", "--help"],
                    ["billing", "run", "--help"]):
        shown = CliRunner().invoke(app, command)
        assert shown.exit_code == 0 and "--json" in shown.output, command
    hashed = CliRunner().invoke(app, ["billing", "map-customer", "--help"])
    assert "--raw" in hashed.output and "hash" in hashed.output
