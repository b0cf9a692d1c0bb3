"""How the detect stage configures faust: options, credentials, app settings, topic check.

:class:`FaustOptions` holds the app's timeouts and sizes; :func:`app_settings` turns them and
the driftwire settings into the keyword arguments of :class:`faust.App`. :func:`check_topics`
runs before the app is built: the partials topic must exist, and the state changelog (if it
exists already) must have as many partitions. :func:`read_committed`
(:mod:`driftwire.stages.detect._consumer`) gives the app its consumer.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from driftwire.errors import ConfigError, TransportError
from driftwire.ops.config import KafkaSettings, Settings, secret
from driftwire.stages.compression import output_compression
from driftwire.stages.detect._access import check_app_access


@dataclass(frozen=True)
class FaustOptions:
    """Timeouts and sizes of the Faust app; the defaults suit a production cluster.

    ``replication_factor`` of the changelog topic: ``None`` derives it from the cluster
    (3, or fewer on a smaller cluster).
    """

    replication_factor: int | None = None
    tick_interval_s: float = 1.0
    start_timeout_s: float = 300.0  # start-up includes the changelog recovery
    recovery_timeout_s: float = 300.0  # one rebalance, revoke to "worker ready"
    stop_timeout_s: float = 30.0
    topic_wait_s: float = 60.0  # for the partials topic to exist
    baselines_wait_s: float = 60.0  # to read the baselines topic to its end before detecting
    alert_timeout_s: float = 60.0  # one alert's acknowledgement
    snapshot_interval_s: float = 60.0  # every model's snapshot at least this often
    commit_stall_s: float = 300.0  # committed offset still while records past it are read
    max_snapshot_bytes: int = 8 * 1024 * 1024
    extra: dict[str, Any] = field(default_factory=dict)  # any other faust setting


def max_message_bytes(o: FaustOptions) -> int:
    """The largest record the app produces: a snapshot of the maximum size, plus room."""
    return o.max_snapshot_bytes + 256 * 1024


def faust_credentials(kafka: KafkaSettings) -> Any:
    """``broker_credentials`` for faust from the same settings aiokafka gets."""
    import faust

    opts = kafka.client_options()
    ssl_context = opts.get("ssl_context")
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=secret(kafka.sasl_password),
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


def broker_urls(bootstrap_servers: str) -> list[str]:
    """``host:port,host:port`` as the ``kafka://`` URLs faust takes.

    >>> broker_urls("a:9092, b:9093")
    ['kafka://a:9092', 'kafka://b:9093']
    """
    return [f"kafka://{h.strip()}" for h in bootstrap_servers.split(",") if h.strip()]


def data_dir(settings: Settings, app_id: str) -> str:
    """Where faust keeps its (small) local files: never the working directory."""
    path = Path(settings.detect.data_dir or Path(tempfile.gettempdir()) / "driftwire")
    path.mkdir(parents=True, exist_ok=True)
    return str(path / app_id)


def app_settings(
    s: Settings, o: FaustOptions, *, app_id: str, partitions: int, replication: int
) -> dict[str, Any]:
    """The keyword arguments of :class:`faust.App` for the detect stage."""
    session_s = s.consumer.session_timeout_ms / 1000
    settings: dict[str, Any] = dict(
        broker=broker_urls(s.kafka.bootstrap_servers),
        broker_credentials=faust_credentials(s.kafka),
        broker_client_id=f"{s.kafka.client_id}-detect",
        store="memory://",  # no RocksDB (faust-streaming#543); state lives in the changelog
        web_enabled=False,
        datadir=data_dir(s, app_id),
        autodiscover=False,
        topic_replication_factor=replication,
        topic_partitions=partitions,
        topic_disable_leader=True,  # no on_leader timers: no leader-election topic
        table_standby_replicas=0,  # standbys would double the memory of the memory store
        consumer_auto_offset_reset="earliest",  # "latest" can stall recovery (faust#651)
        processing_guarantee="at_least_once",  # no transaction markers in the changelog
        producer_acks=-1,
        producer_compression_type=output_compression(),
        producer_max_request_size=max_message_bytes(o),
        producer_request_timeout=o.alert_timeout_s,  # faust's default is 20 minutes
        broker_session_timeout=session_s,
        broker_heartbeat_interval=max(1.0, session_s / 10),
        broker_request_timeout=session_s + 10,  # faust requires request >= session
        broker_rebalance_timeout=max(60.0, session_s),
        broker_max_poll_interval=s.consumer.max_poll_interval_ms / 1000,
        broker_max_poll_records=200,
        stream_wait_empty=True,  # every event is acked promptly: the agent never blocks
        stream_processing_timeout=o.alert_timeout_s + 30,
    )
    settings.update(o.extra)
    return settings


async def topic_exists(s: Settings, name: str) -> bool:
    """Whether topic ``name`` exists (listed, never described: see :func:`check_topics`)."""
    admin = AIOKafkaAdminClient(**s.kafka.client_options())
    await admin.start()
    try:
        return name in await admin.list_topics()
    finally:
        await admin.close()


async def check_topics(
    s: Settings, o: FaustOptions, changelog: str, stop: asyncio.Event, *, app_id: str | None = None
) -> tuple[int, int] | None:
    """Partitions of the partials topic and the replication factor of the state changelog,
    which must have as many partitions; ``None`` if ``stop`` is set while waiting. With
    ``app_id``, the app's group and changelog creation are checked against the ACLs too
    (:func:`~driftwire.stages.detect._access.check_app_access`).

    Topics are looked up by listing, never described by name: a metadata request naming a
    missing topic makes a broker with ``auto.create.topics.enable`` create it.
    """
    admin = AIOKafkaAdminClient(**s.kafka.client_options())
    await admin.start()
    try:
        partials = s.topics.partials
        loop = asyncio.get_running_loop()
        deadline = loop.time() + o.topic_wait_s
        while partials not in await admin.list_topics():
            if stop.is_set():
                return None
            if loop.time() > deadline:
                raise TransportError(
                    f"partials topic {partials!r} does not exist (create it with as many "
                    "partitions as detect workers may ever run)"
                )
            await asyncio.sleep(1.0)
        names = [partials] + ([changelog] if changelog in await admin.list_topics() else [])
        found = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        if o.replication_factor is None:
            brokers = len((await admin.describe_cluster())["brokers"])
            replication = max(1, min(3, brokers))
        else:
            replication = o.replication_factor
        if app_id is not None:
            await check_app_access(
                admin,
                app_id,
                changelog,
                exists=changelog in found,
                partitions=found[partials],
                replication=replication,
            )
    finally:
        await admin.close()
    n = found[partials]
    if changelog in found and found[changelog] != n:
        raise ConfigError(
            "topics.partials",
            f"{partials!r} has {n} partitions but the state changelog {changelog!r} has "
            f"{found[changelog]}",
            "a model's state must live in the partition of its partials: restore the "
            "partition count, or delete the changelog (the windows then start again)",
        )
    return n, replication
