"""The one line for a refusal of the broker names what to grant, whichever request it was."""

from __future__ import annotations

from aiokafka.errors import ClusterAuthorizationFailedError, TopicAuthorizationFailedError

from driftwire.bridges import bridge_topic_needs
from driftwire.ops.config import Settings
from driftwire.ops.kafka_check import authorization_problem


def test_a_refused_producer_id_names_the_topics_to_write() -> None:
    """Without Write on any topic, the first refusal is the idempotent producer's id (a
    cluster error), before any topic is named: the line names the Write the process needs,
    so it reads the same whichever of its requests the broker refused first."""
    settings = Settings()
    needs = bridge_topic_needs(settings)
    line = authorization_problem(ClusterAuthorizationFailedError(), settings, needs)
    refused = TopicAuthorizationFailedError({"driftwire-alerts.dlq"})
    topic = authorization_problem(refused, settings, needs)
    assert line is not None and topic is not None
    assert line.startswith("Kafka: User:ANONYMOUS is not authorized: it needs "), line
    assert "Write and Describe on topic driftwire-alerts.dlq" in line
    assert "Write and Describe on topic driftwire-alerts.dlq" in topic
    assert "Read and Describe on topic driftwire-alerts " not in line  # only what writes


def test_the_worker_defaults_name_every_topic_it_writes() -> None:
    line = authorization_problem(ClusterAuthorizationFailedError(), Settings())
    assert line is not None
    for topic in ("driftwire-partials", "driftwire-alerts"):
        assert f"on topic {topic}" in line, line
