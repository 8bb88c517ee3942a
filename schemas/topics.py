"""Kafka topic names: the only place they are spelled out."""

# Record format v2 (``schemas/RECORD_FORMAT.md``): many events per record, Arrow IPC.
EVENTS_TOPIC = "turnstile.events.v2"
DEAD_LETTER_TOPIC = "turnstile.events.dlq.v1"
