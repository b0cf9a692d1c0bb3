"""Alert bridges: ``driftwire bridge TARGET`` forwards the alerts topic to a receiver.

Targets: ``alertmanager`` (``POST /api/v2/alerts``, firing alerts re-sent), ``pagerduty``
(Events API v2, ``dedup_key`` = fingerprint), ``slack`` (an incoming webhook, Block Kit
message) and ``webhook`` (the CloudEvent as it is). Each runs in the same consumer shell
(:mod:`driftwire.bridges._shell`): routing, de-duplication, retries with backoff, a
dead-letter topic for what cannot be delivered, commits after delivery. ``driftwire bridge``
serves the bridge's metrics (:class:`~driftwire.ops.metrics.BridgeMetrics`) and health on
``http.host``:``bridges.http_port`` (9465; the worker's is ``http.port``, 9464).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl

from pydantic import SecretStr

from driftwire.bridges._shell import BridgeShell, Target, https_context, route_matches
from driftwire.errors import ConfigError, TransportError
from driftwire.ops.config import Settings, load_settings

__all__ = [
    "TARGETS",
    "BridgeShell",
    "Target",
    "build_target",
    "route_matches",
    "run_bridge",
    "serve_bridge",
]

log = logging.getLogger(__name__)

TARGETS = ("alertmanager", "pagerduty", "slack", "webhook")


def _required(value: SecretStr | str | None, key: str, target: str) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value:
        raise ConfigError(
            f"bridges.{key}",
            f"required by the {target} bridge",
            f"set it in the file or DRIFTWIRE_BRIDGES_{key.upper()}[_FILE]",
        )
    return value


def build_target(name: str, settings: Settings) -> Target:
    """The target called ``name``, configured from ``settings.bridges``."""
    b = settings.bridges
    if name == "alertmanager":
        from driftwire.bridges.alertmanager import AlertmanagerTarget

        return AlertmanagerTarget(b.alertmanager_url, resend_s=b.alertmanager_resend_seconds)
    if name == "pagerduty":
        from driftwire.bridges.pagerduty import PagerDutyTarget

        return PagerDutyTarget(
            b.pagerduty_url,
            routing_key=_required(b.pagerduty_routing_key, "pagerduty_routing_key", name),
            severities=b.pagerduty_severity,
        )
    if name == "slack":
        from driftwire.bridges.slack import SlackTarget

        return SlackTarget(_required(b.slack_webhook_url, "slack_webhook_url", name))
    if name == "webhook":
        from driftwire.bridges.webhook import WebhookTarget

        headers = {k: v.get_secret_value() for k, v in b.webhook_headers.items()}
        return WebhookTarget(_required(b.webhook_url, "webhook_url", name), headers)
    raise ConfigError("bridge", f"unknown target {name!r}", f"one of: {', '.join(TARGETS)}")


async def serve_bridge(settings: Settings, target: str, stop: asyncio.Event) -> int:
    """Run one target with ``/metrics``, ``/healthz`` and ``/readyz`` on ``http.host`` and
    ``bridges.http_port`` until ``stop`` is set; returns the process exit code.

    Like the worker, a bridge whose consume loop makes no progress for
    ``http.liveness_timeout_seconds`` while alerts wait turns ``/healthz`` to 503 and exits
    with :data:`~driftwire.ops.health.EXIT_STUCK` to be restarted.
    """
    from prometheus_client import CollectorRegistry

    from driftwire.ops.health import EXIT_STUCK, HealthServer, Readiness
    from driftwire.ops.metrics import BridgeMetrics
    from driftwire.ops.web_config import load_web_config

    built = build_target(target, settings)
    registry = CollectorRegistry()
    readiness = Readiness()
    shell = BridgeShell(
        settings, built, metrics=BridgeMetrics(registry, built.name), readiness=readiness
    )
    web_config = load_web_config(settings.http.web_config_file)
    health = HealthServer(registry, readiness, web_config=web_config)
    await health.start(settings.http.host, settings.bridges.http_port)
    log.info(
        "bridge serving metrics and health",
        extra={
            "fields": {"target": built.name, "http_port": health.port, "http_scheme": health.scheme}
        },
    )

    async def watchdog() -> None:
        while not stop.is_set():
            if readiness.stuck:
                log.error("bridge makes no progress while alerts wait; exiting to be restarted")
                stop.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)

    watcher = asyncio.create_task(watchdog(), name="bridge-watchdog")
    try:
        await shell.run(stop)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await health.stop()
    return EXIT_STUCK if readiness.stuck else 0


def bridge_topic_needs(settings: Settings) -> dict[str, str]:
    """What a bridge needs on each of its topics (besides Read on its group).

    >>> bridge_topic_needs(Settings())
    {'driftwire-alerts': 'Read and Describe', 'driftwire-alerts.dlq': 'Write and Describe'}
    """
    alerts = settings.topics.alerts
    dead_letter = settings.bridges.dead_letter or f"{alerts}.dlq"
    return {alerts: "Read and Describe", dead_letter: "Write and Describe"}


def run_bridge(target: str, config: str | None) -> int:
    """``driftwire bridge TARGET --config FILE``: run until SIGTERM / SIGINT."""
    from driftwire.ops.broker import wait_for_broker
    from driftwire.ops.kafka_check import authorization_problem, check_kafka
    from driftwire.ops.logs import configure_logging
    from driftwire.ops.web_config import load_web_config

    settings = load_settings(config)
    configure_logging(settings.log.level)
    build_target(target, settings)  # a configuration error before anything starts
    load_web_config(settings.http.web_config_file)
    try:
        https_context(settings.bridges.ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "bridges.ssl_cafile", f"cannot load {settings.bridges.ssl_cafile}: {exc}"
        ) from None

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if not await wait_for_broker(settings.kafka, stop):
            return 0  # stopped while waiting for the broker
        await check_kafka(settings.kafka)  # a wrong password or certificate: one line, exit 1
        try:
            return await serve_bridge(settings, target, stop)
        except Exception as exc:  # a missing ACL: one line naming it, exit 1
            denied = authorization_problem(exc, settings, bridge_topic_needs(settings))
            if denied is None:
                raise
            raise TransportError(denied, retriable=False) from None

    return asyncio.run(main())
