import pytest
import typer
from typer.testing import CliRunner

from tests.unit.agent.fake_gateway import start_fake_gateway
from turnstile_cli.loadgen import GroundTruth
from turnstile_cli.loadgen.cli import parse_keys, parse_start
from turnstile_cli.main import app


def test_start_times():
    now = 1_764_669_600.7
    assert parse_start("now", now) == 1_764_669_600_000_000
    assert parse_start("now-2h", now) == (1_764_669_600 - 7200) * 1_000_000
    assert parse_start("2025-12-02T10:00:00Z") == 1_764_669_600_000_000
    assert parse_start("2025-12-02") == 1_764_633_600_000_000
    for bad in ("now-2y", "yesterday"):
        with pytest.raises(typer.BadParameter):
            parse_start(bad)


def test_keys():
    assert parse_keys(["shop=tsk_1", "maps=tsk=2"]) == {"shop": "tsk_1", "maps": "tsk=2"}
    with pytest.raises(typer.BadParameter, match="PROJECT=WRITE_KEY"):
        parse_keys(["tsk_only"])


@pytest.mark.parametrize("via", ["direct", "agent"])
def test_loadgen_command_sends_and_writes_the_truth(tmp_path, via):
    gw = start_fake_gateway()
    try:
        truth = tmp_path / "truth.json"
        result = CliRunner().invoke(app, [
            "loadgen", "--url", gw.url, "--key", "shop=tsk_w_1", "--events", "3000",
            "--start", "2025-12-02T10:00:00Z", "--duplicates", "0.2", "--late", "0.05",
            "--via", via, "--truth", str(truth)])
        assert result.exit_code == 0, result.output
        assert "3000 events" in result.output
        loaded = GroundTruth.load(truth)
        assert sum(loaded.requests_per_key_day().values()) == 3000
        assert len(loaded.duplicate_batch_ids) == 1  # 3 batches × 0.2 → at least one
        sent = {r.headers["X-Turnstile-Batch-Id"] for r in gw.received}
        assert set(loaded.duplicate_batch_ids) <= sent
    finally:
        gw.server.shutdown()
        gw.server.server_close()


def test_a_bad_option_is_named():
    result = CliRunner().invoke(app, ["loadgen", "--key", "a=b", "--late", "3"])
    assert result.exit_code == 2
    assert "late_rate must be within 0..1" in result.output
