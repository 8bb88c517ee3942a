"""Records (and window rows) the speed layer cannot process go to the dead letters.

Decoding refuses undecodable and unstorable records (``decode.py``); the writer refuses
window rows PostgreSQL still will not take (``sink.py``). Both hand their letters to one
``DeadLetterPublisher`` per process: the original key and value go to the dead-letter
topic with the shared headers (``schemas.dead_letters``), a row to ``dead_letters``,
and the flow goes on. The sink step returns only once both are durable, so the epoch
that skips a record is never committed before its letter is.
"""

from __future__ import annotations

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from schemas.dead_letter_publisher import DeadLetterPublisher
from schemas.dead_letters import DeadLetter
from speed_layer.flow_errors import logged


class _DeadLetterPartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, publisher: DeadLetterPublisher, step: str) -> None:
        self.publisher = publisher
        self.step = step

    def write_batch(self, items: list[DeadLetter]) -> None:
        with logged(self.step, lambda: f"{len(items)} dead letter(s)"):
            self.publisher.publish(items)


class DeadLetterSink(DynamicSink[DeadLetter]):
    """Every worker shares the process's publisher; ``write_batch`` waits until durable."""

    def __init__(self, publisher: DeadLetterPublisher) -> None:
        self.publisher = publisher

    def build(self, step_id: str, worker_index: int,
              worker_count: int) -> _DeadLetterPartition:
        return _DeadLetterPartition(self.publisher, step_id)
