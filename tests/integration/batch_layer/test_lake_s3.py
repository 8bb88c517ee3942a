import uuid
from datetime import timedelta

import pyarrow.fs as pafs

from batch_layer.billing import compute_usage, connect, register_day
from batch_layer.lake import apply_retention, committed_files, open_lake
from tests.integration.batch_layer.conftest import drain, lake_table, produce, writer_settings
from tests.unit.batch_layer.fixtures import DAY, make_events, truth_of


def s3_settings(stack, topic, s3_server):
    return writer_settings(stack, topic, f"s3://{s3_server.bucket}/lake-{uuid.uuid4().hex[:8]}",
                           s3=s3_server)


def test_lake_on_s3_holds_every_event_once_and_bills_exactly(stack, fresh_topic, s3_server):
    topic = fresh_topic(partitions=2)
    events = make_events(2000, seed=41, days=2)
    produced = produce(stack.kafka_bootstrap, topic, events, duplicate_rate=0.05, seed=2)
    settings = s3_settings(stack, topic, s3_server)
    lake = open_lake(settings)
    assert isinstance(lake.fs, pafs.S3FileSystem)
    drain(settings, lake, 2)
    files = committed_files(lake, DAY)
    assert files and all(f.startswith(f"{s3_server.bucket}/lake-") for f in files)
    table = lake_table(lake, [DAY, DAY + timedelta(days=1)])
    assert table.num_rows == produced.events
    con = connect(1, "1GB")
    register_day(con, lake, DAY)
    rows = compute_usage(con, DAY, {}, "default")
    truth = truth_of(events)
    assert {(r.project_id, r.api_key, r.day): r.total_requests for r in rows} == {
        k: v for k, v in truth.total.items() if k[2] == DAY}
    assert apply_retention(lake, DAY + timedelta(days=91), 90) == [DAY]
    assert committed_files(lake, DAY) == []
    assert committed_files(lake, DAY + timedelta(days=1))

