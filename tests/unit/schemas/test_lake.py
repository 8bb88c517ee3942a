from datetime import UTC, date, datetime, timedelta

import pytest

from batch_layer.settings import BatchSettings
from query_api.settings import QuerySettings
from schemas.lake import (
    LakeSettings,
    data_file_name,
    days_of,
    open_lake_root,
    partition_dir,
    project_dir,
    project_files,
    project_from_dir,
    readable,
)

DAY = date(2026, 11, 20)
IDS = ["acme", "acme corp", "a:b@c", "x/../y", "ünï 🚀", "100%", "a?b*[c]", ".", "..", "_q"]


@pytest.mark.parametrize("project_id", IDS)
def test_project_folder_is_one_plain_name_and_decodes_back(project_id):
    name = project_dir(project_id)
    assert name.startswith("project=")
    assert not set(name) & set("/\\?*[] ")
    assert project_from_dir(name) == project_id


def test_one_lake_uri_setting_for_every_service(monkeypatch, tmp_path):
    monkeypatch.setenv("TURNSTILE_LAKE_URI", "s3://bucket/prefix")
    monkeypatch.setenv("TURNSTILE_LAKE_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    for settings in (BatchSettings(), QuerySettings()):
        assert settings.lake.uri == "s3://bucket/prefix"
        assert settings.lake.s3_endpoint_url == "http://127.0.0.1:9000"


def test_the_default_lake_is_in_the_state_folder_for_every_service(monkeypatch, tmp_path):
    monkeypatch.delenv("TURNSTILE_LAKE_URI", raising=False)
    monkeypatch.setenv("TURNSTILE_STATE_DIR", str(tmp_path))
    want = str((tmp_path / "lake").resolve())
    assert {s.lake.resolved_uri(s.state.state_dir)
            for s in (BatchSettings(), QuerySettings())} == {want}


def test_project_files_finds_awkward_ids_and_only_committed_files(tmp_path):
    lake = open_lake_root(LakeSettings(uri=str(tmp_path)), tmp_path)
    for pid in IDS:
        folder = tmp_path / partition_dir(DAY, pid)
        folder.mkdir(parents=True)
        (folder / data_file_name(0, 5)).write_bytes(b"x")
        (folder / f".{data_file_name(0, 9)}.tmp").write_bytes(b"x")
        (folder / "_internal.parquet").write_bytes(b"x")
    for pid in IDS:
        files = project_files(lake, pid, DAY)
        assert files == [str(tmp_path / partition_dir(DAY, pid) / data_file_name(0, 5))], pid
    assert project_files(lake, "nobody", DAY) == []


def test_modified_after_skips_files_written_before(tmp_path):
    lake = open_lake_root(LakeSettings(uri=str(tmp_path)), tmp_path)
    folder = tmp_path / partition_dir(DAY, "p")
    folder.mkdir(parents=True)
    (folder / data_file_name(0, 1)).write_bytes(b"x")
    now = datetime.now(UTC)
    assert project_files(lake, "p", DAY, modified_after=now - timedelta(minutes=5))
    assert project_files(lake, "p", DAY, modified_after=now + timedelta(minutes=5)) == []


def test_days_of_a_half_open_range():
    start = datetime(2026, 11, 20, 23, tzinfo=UTC)
    assert list(days_of(start, start + timedelta(hours=1))) == [DAY]
    assert list(days_of(start, start + timedelta(hours=2))) == [DAY, DAY + timedelta(days=1)]


def test_a_lake_not_made_yet_is_readable_under_an_existing_folder(tmp_path):
    assert readable(open_lake_root(LakeSettings(uri=str(tmp_path / "new")), tmp_path,
                                   create=False))
    assert not readable(open_lake_root(LakeSettings(uri=str(tmp_path / "a" / "b")), tmp_path,
                                       create=False))
