import psycopg

from schemas.dead_letters import DEAD_LETTERS, DeadLetter, record_dead_letters


def test_dead_letters_are_recorded_once_even_when_replayed(stack):
    letter = DeadLetter(component="test_component", reason="latency_digest: cannot store",
                        kind="unstorable", project_id="dl-project", topic="events",
                        partition=1, offset=7, event_id="e1", value=b"\x00raw")
    before = DEAD_LETTERS.labels("test_component", "dl-project", "unstorable")._value.get()
    with psycopg.connect(stack.database_url) as conn:
        record_dead_letters(conn, [letter])
        record_dead_letters(conn, [letter])  # a replay after a crash
        rows = conn.execute(
            "SELECT component, reason, kafka_offset, payload_sample FROM dead_letters"
            " WHERE project_id = 'dl-project'").fetchall()
    assert rows == [("test_component", "latency_digest: cannot store", 7, "\\x00raw")]
    assert DEAD_LETTERS.labels("test_component", "dl-project", "unstorable")._value.get() \
        == before + 2
