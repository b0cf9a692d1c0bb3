"""The topics driftwire writes, with the settings the README documents: created when missing,
checked when they exist.

Every entry point that writes a topic calls :func:`ensure_topics` with the topics it writes
(the worker all of its outputs, a bridge its dead-letter topic, ``baseline build --publish``
the baselines topic), so a topic is never left to the broker's auto-creation with its
defaults (``cleanup.policy=delete``, 7 days: baselines that silently expire after a week).
The input topic is never created: it belongs to the serving stack.

An existing topic is checked against its spec: a retention shorter than documented is
warned about (data goes sooner than the README promises), a topic that must be compacted and
is not is refused with one line saying how to fix it.

>>> spec = TopicSpec("b", "topics.baselines", 1, {"cleanup.policy": "compact"})
>>> problems({"cleanup.policy": "delete", "retention.ms": "604800000"}, spec)[0].fatal
True
>>> spec = TopicSpec("a", "topics.alerts", 3, {"retention.ms": str(30 * DAY_MS)})
>>> print(problems({"cleanup.policy": "delete", "retention.ms": "604800000"}, spec)[0].text[:83])
topic a (topics.alerts) keeps records 7 days (retention.ms=604800000), shorter than
>>> problems({"cleanup.policy": "delete", "retention.ms": "-1"}, spec)
[]
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from driftwire.errors import ConfigError
from driftwire.ops.config import Settings

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
DEAD_LETTER_RETENTION_MS = 14 * DAY_MS
PARTIALS_RETENTION_MS = 1 * DAY_MS
ALERTS_RETENTION_MS = 30 * DAY_MS
ALERTS_PARTITIONS = 3


@dataclass(frozen=True)
class TopicSpec:
    """A topic driftwire writes: its name, the settings key that names it, and its configs."""

    name: str
    key: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)

    @property
    def compacted(self) -> bool:
        return "compact" in self.configs.get("cleanup.policy", "")


@dataclass(frozen=True)
class Problem:
    text: str
    fatal: bool = False


def dead_letter_spec(name: str, key: str) -> TopicSpec:
    return TopicSpec(name, key, 1, {"retention.ms": str(DEAD_LETTER_RETENTION_MS)})


def baselines_spec(settings: Settings) -> TopicSpec:
    return TopicSpec(
        settings.topics.baselines, "topics.baselines", 1, {"cleanup.policy": "compact"}
    )


def worker_specs(settings: Settings) -> list[TopicSpec]:
    """The topics the worker writes (its dead letters, partials, alerts) and reads back
    (baselines), as the topic table (docs/operations.md) documents them."""
    t = settings.topics
    return [
        dead_letter_spec(t.dead_letter_topic, "topics.dead_letter"),
        TopicSpec(
            t.partials,
            "topics.partials",
            t.partials_partitions,
            {"retention.ms": str(PARTIALS_RETENTION_MS)},
        ),
        TopicSpec(
            t.alerts, "topics.alerts", ALERTS_PARTITIONS, {"retention.ms": str(ALERTS_RETENTION_MS)}
        ),
        baselines_spec(settings),
        *([dead_letter_spec(f"{t.labels}.dlq", "topics.labels")] if settings.truth.enabled else []),
    ]


def _days(ms: int) -> str:
    return f"{ms / DAY_MS:g} days" if ms % DAY_MS == 0 else f"{ms / 3_600_000:g} hours"


def problems(found: Mapping[str, str], spec: TopicSpec) -> list[Problem]:
    """What is wrong with an existing topic's configs ``found`` against ``spec``."""
    fix = f"kafka-configs.sh --alter --entity-type topics --entity-name {spec.name} --add-config"
    policy = found.get("cleanup.policy", "delete")
    if spec.compacted and "compact" not in policy:
        return [
            Problem(
                f"topic {spec.name} ({spec.key}) has cleanup.policy={policy}, but it must be "
                f"compacted (its records would expire after retention.ms); fix: {fix} "
                "cleanup.policy=compact",
                fatal=True,
            )
        ]
    wanted = spec.configs.get("retention.ms")
    have = found.get("retention.ms")
    if wanted is None or have is None or "delete" not in policy:
        return []
    if int(have) < 0 or int(have) >= int(wanted):
        return []
    return [
        Problem(
            f"topic {spec.name} ({spec.key}) keeps records {_days(int(have))} "
            f"(retention.ms={have}), shorter than the {_days(int(wanted))} driftwire expects; "
            f"raise it: {fix} retention.ms={wanted}"
        )
    ]


async def _configs(admin: AIOKafkaAdminClient, names: Sequence[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    keys = ["cleanup.policy", "retention.ms"]
    resources = [ConfigResource(ConfigResourceType.TOPIC, n, dict.fromkeys(keys)) for n in names]
    out: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for error, message, _type, name, entries in response.resources:
            if error:  # e.g. no DescribeConfigs permission: say so, do not guess
                log.warning(
                    f"cannot check the configs of topic {name} (error {error}: {message}); "
                    "not checked",
                    extra={"fields": {"topic": name}},
                )
                continue
            out[name] = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
    return out


async def ensure_topics(
    settings: Settings, specs: Sequence[TopicSpec] | None = None, *, create: bool | None = None
) -> list[str]:
    """Create the missing topics of ``specs`` (default: the worker's) when ``create``
    (default ``topics.create``) and check the existing ones; returns the names created.

    Raises :class:`ConfigError` (one line) for a topic that must be compacted and is not.
    """
    specs = worker_specs(settings) if specs is None else specs
    create = settings.topics.create if create is None else create
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        checked = [s for s in specs if s.name in existing]
        found = await _configs(admin, [s.name for s in checked])
        warnings: list[tuple[str, str]] = []
        for spec in checked:  # refuse before creating anything
            if spec.name not in found:
                continue
            for problem in problems(found[spec.name], spec):
                if problem.fatal:
                    raise ConfigError(spec.key, problem.text)
                warnings.append((spec.name, problem.text))
        for name, text in warnings:
            log.warning(text, extra={"fields": {"topic": name}})
        created: list[str] = []
        if create:
            brokers = len((await admin.describe_cluster())["brokers"])
            rf = settings.topics.replication_factor or min(3, max(1, brokers))
            for spec in specs:
                if spec.name in existing:
                    continue
                topic = NewTopic(spec.name, spec.partitions, rf, topic_configs=dict(spec.configs))
                with contextlib.suppress(TopicAlreadyExistsError):  # another worker was faster
                    await admin.create_topics([topic])
                    created.append(spec.name)
    finally:
        await admin.close()
    if created:
        log.info("created topics", extra={"fields": {"topics": created}})
    return created
