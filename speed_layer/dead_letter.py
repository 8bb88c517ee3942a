"""Records the speed layer cannot decode go to the dead-letter topic, with the reason.

The original key and value are kept as they were; headers say where the record came
from and why it was refused, so a tool can inspect or replay it. The flow goes on.
"""

from __future__ import annotations

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaException, Producer

from speed_layer.items import DeadLetter
from speed_layer.settings import SpeedSettings

REASON_HEADER = "turnstile-dead-letter-reason"
ORIGIN_HEADER = "turnstile-origin"  # "<topic>/<partition>/<offset>"
COMPONENT_HEADER = "turnstile-component"


def headers_for(letter: DeadLetter) -> list[tuple[str, str | bytes | None]]:
    return [
        (REASON_HEADER, letter.reason.encode()),
        (ORIGIN_HEADER, f"{letter.topic}/{letter.partition}/{letter.offset}".encode()),
        (COMPONENT_HEADER, b"speed_layer"),
    ]


class _DeadLetterPartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, settings: SpeedSettings) -> None:
        self.topic = settings.kafka.dead_letter_topic
        self._producer = Producer({
            "bootstrap.servers": settings.kafka.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
        })

    def write_batch(self, items: list[DeadLetter]) -> None:
        errors: list[str] = []

        def on_delivery(err: object, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        for letter in items:
            self._producer.produce(self.topic, value=letter.value, key=letter.key,
                                   headers=headers_for(letter), on_delivery=on_delivery)
        if self._producer.flush(30) or errors:
            raise KafkaException(f"dead letters not delivered: {errors[:3]}")

    def close(self) -> None:
        self._producer.flush(10)


class DeadLetterSink(DynamicSink[DeadLetter]):
    """A producer per worker; ``write_batch`` returns only once Kafka acknowledged."""

    def __init__(self, settings: SpeedSettings) -> None:
        self.settings = settings

    def build(self, step_id: str, worker_index: int,
              worker_count: int) -> _DeadLetterPartition:
        return _DeadLetterPartition(self.settings)
