"""Kafka topic names: the only place they are spelled out."""

EVENTS_TOPIC = "turnstile.events.v1"
DEAD_LETTER_TOPIC = "turnstile.events.dlq.v1"

# Record header carrying the gateway's batch id, so a retried batch is recognisable downstream.
BATCH_ID_HEADER = "turnstile-batch-id"
# Record header carrying the record format version (mirrors the "v" field of the JSON body).
FORMAT_HEADER = "turnstile-format"
