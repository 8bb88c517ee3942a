"""How long one batch can keep being retried: the agent stops then, the stream remembers.

The agent starts no attempt at a batch later than ``AGENT_MAX_RETRY_S`` after its first
one (``agent.sender``; ``AgentSettings.max_retry_s`` may be lower, never higher). An attempt
reaches Kafka within ``PUBLISH_SLACK_S`` of starting (the gateway's request handling and
producer queue, plus clock skew between gateway hosts, whose CreateTime stamps the record).
So a batch id the speed layer keeps for ``RETRY_DEDUPE_HORIZON_S`` of its partition's
CreateTime recognises every retry the agent can make, and counts it once.
"""

from __future__ import annotations

from typing import Final

AGENT_MAX_RETRY_S: Final = 600.0
PUBLISH_SLACK_S: Final = 60.0
RETRY_DEDUPE_HORIZON_S: Final = AGENT_MAX_RETRY_S + PUBLISH_SLACK_S
