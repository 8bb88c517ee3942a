import os
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq

from batch_layer.lake import (
    apply_retention,
    committed_files,
    expired_days,
    open_lake,
    partition_dir,
    write_parquet_atomic,
)
from batch_layer.settings import BatchSettings
from schemas.lake import LakeSettings


def lake_at(tmp_path):
    return open_lake(BatchSettings(lake=LakeSettings(uri=str(tmp_path / "lake"))))


def test_expired_days_keeps_exactly_the_retention_window():
    days = [date(2026, 8, 21), date(2026, 8, 22), date(2026, 11, 20)]
    assert expired_days(days, date(2026, 11, 20), 90) == [date(2026, 8, 21)]


def test_atomic_write_leaves_no_temporary_file_and_is_readable(tmp_path):
    lake = lake_at(tmp_path)
    path = lake.path("dt=2026-11-20/project=a/part-0000-00000000000000000000.parquet")
    write_parquet_atomic(lake, path, pa.table({"x": [1, 2, 3]}), 3)
    assert pq.read_table(path).column("x").to_pylist() == [1, 2, 3]
    assert os.listdir(os.path.dirname(path)) == ["part-0000-00000000000000000000.parquet"]


def test_committed_files_ignore_temporary_and_internal_files(tmp_path):
    lake = lake_at(tmp_path)
    base = tmp_path / "lake" / "dt=2026-11-20"
    (base / "project=a").mkdir(parents=True)
    (base / "project=a" / "part-1.parquet").write_bytes(b"x")
    (base / "project=a" / ".part-2.parquet.abc.tmp").write_bytes(b"x")
    (base / "project=a" / ".hidden.parquet").write_bytes(b"x")
    (base / "_tmp").mkdir()
    (base / "_tmp" / "part-3.parquet").write_bytes(b"x")
    assert committed_files(lake, date(2026, 11, 20)) == [str(base / "project=a" / "part-1.parquet")]
    assert committed_files(lake, date(2026, 11, 21)) == []


def test_retention_deletes_whole_old_partitions(tmp_path):
    lake = lake_at(tmp_path)
    for day in ("2026-01-01", "2026-11-19"):
        (tmp_path / "lake" / f"dt={day}" / "project=a").mkdir(parents=True)
    (tmp_path / "lake" / "_quarantine" / "dt=2026-01-01").mkdir(parents=True)
    assert apply_retention(lake, date(2026, 11, 20), 90) == [date(2026, 1, 1)]
    assert sorted(os.listdir(tmp_path / "lake")) == ["_quarantine", "dt=2026-11-19"]
    assert os.listdir(tmp_path / "lake" / "_quarantine") == []


def test_partition_dir_is_hive_style():
    assert partition_dir(date(2026, 1, 2), "acme") == "dt=2026-01-02/project=acme"
