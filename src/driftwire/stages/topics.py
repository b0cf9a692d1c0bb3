"""Create the topics driftwire writes to, with the settings they need, when they are missing.

The input topic is never created: it belongs to the serving stack. Dead letters, partials and
alerts are plain topics; baselines is compacted (the newest baseline per ``model/version``).
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from driftwire.ops.config import Settings

log = logging.getLogger(__name__)


def wanted_topics(settings: Settings, brokers: int) -> list[NewTopic]:
    t = settings.topics
    rf = t.replication_factor or min(3, max(1, brokers))
    return [
        NewTopic(t.dead_letter_topic, 1, rf),
        NewTopic(t.partials, t.partials_partitions, rf),
        NewTopic(t.alerts, 3, rf),
        NewTopic(t.baselines, 1, rf, topic_configs={"cleanup.policy": "compact"}),
        *([NewTopic(f"{t.labels}.dlq", 1, rf)] if settings.truth.enabled else []),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing output topics; returns the names created."""
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        brokers = len((await admin.describe_cluster())["brokers"])
        missing = [n for n in wanted_topics(settings, brokers) if n.name not in existing]
        created = []
        for topic in missing:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # another worker was faster
        if created:
            log.info("created topics", extra={"fields": {"topics": created}})
        return created
    finally:
        await admin.close()
