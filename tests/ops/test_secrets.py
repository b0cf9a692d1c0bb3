"""Secrets in settings: read from a value or ``<KEY>_FILE``, masked in repr, dumps, config errors,
YAML errors, logs and the CLI's error line."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from driftwire import _secrets
from driftwire.errors import ConfigError
from driftwire.ops.config import SECRET_KEYS, load_settings
from driftwire.ops.logs import configure_logging

SASL = "SASLsentinel-3b7e1d"
KEYPW = "KEYPWsentinel-90aa"
ROUTING = "PDsentinel0123456789abcdef012345"
SLACK = "https://hooks.slack.example/services/T0/B0/SLsentinel-c0ffee"
HEADER = "Bearer WHsentinel-77d1"


def _no_sentinel(text: str) -> None:
    for value in (SASL, KEYPW, ROUTING, "SLsentinel-c0ffee", "WHsentinel-77d1"):
        assert value not in text, f"{value} leaked into: {text}"


def test_every_secret_is_listed() -> None:
    assert {
        ("kafka", "sasl_password"),
        ("kafka", "ssl_password"),
        ("bridges", "pagerduty_routing_key"),
        ("bridges", "slack_webhook_url"),
        ("bridges", "webhook_headers"),
    } == SECRET_KEYS


def test_secrets_from_values_env_and_files_are_masked_everywhere(tmp_path: Path) -> None:
    (tmp_path / "keypw").write_text(KEYPW + "\n")
    (tmp_path / "headers").write_text(f"Authorization: {HEADER}\n")
    (tmp_path / "slack").write_text(SLACK)
    config = tmp_path / "driftwire.yaml"
    config.write_text(
        "kafka:\n"
        "  security_protocol: SASL_SSL\n  sasl_mechanism: SCRAM-SHA-512\n"
        f"  sasl_username: driftwire\n  sasl_password: {SASL}\n"
        f"  ssl_password_file: {tmp_path / 'keypw'}\n"
        f"bridges:\n  slack_webhook_url_file: {tmp_path / 'slack'}\n"
    )
    env = {
        "DRIFTWIRE_BRIDGES_PAGERDUTY_ROUTING_KEY": ROUTING,
        "DRIFTWIRE_BRIDGES_WEBHOOK_HEADERS_FILE": str(tmp_path / "headers"),
    }
    s = load_settings(config, env=env)
    assert s.kafka.sasl_password is not None and s.kafka.ssl_password is not None
    assert s.kafka.sasl_password.get_secret_value() == SASL
    assert s.kafka.ssl_password.get_secret_value() == KEYPW
    assert s.bridges.slack_webhook_url is not None
    assert s.bridges.slack_webhook_url.get_secret_value() == SLACK
    assert s.bridges.webhook_headers["Authorization"].get_secret_value() == HEADER
    assert sorted(s.secret_values()) == sorted([SASL, KEYPW, ROUTING, SLACK, HEADER])
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.model_dump()), repr(s.kafka)):
        _no_sentinel(text)
    # the client options carry the plain values: that is where they are needed
    assert s.kafka.client_options()["sasl_plain_password"] == SASL


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            "bridges:\n  pagerduty_routing_key: 912345678901234567\n",
            "bridges.pagerduty_routing_key",
        ),
        ("bridges:\n  webhook_headers:\n    X-Token: 8812345678901\n", "bridges.webhook_headers"),
        ("bridges:\n  slack_webhook_url: [SLsentinel-c0ffee]\n", "bridges.slack_webhook_url"),
        ("kafka:\n  ssl_password: 77123456789\n", "kafka.ssl_password"),
        ("bridges:\n  webhook_headers: 'Authorization: Bearer WHsentinel-77d1'\n", "webhook"),
    ],
)
def test_a_wrong_type_never_echoes_a_secret(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert key in message
    for number in ("912345678901234567", "8812345678901", "77123456789"):
        assert number not in message
    _no_sentinel(message)


def test_a_yaml_error_names_the_line_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f'bridges:\n  slack_webhook_url: "{SLACK}\n  other: [\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert "not valid YAML" in message and "line" in message
    _no_sentinel(message)


def test_an_unreadable_secret_file_names_the_variable_not_a_value(tmp_path: Path) -> None:
    env = {"DRIFTWIRE_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")}
    with pytest.raises(ConfigError) as info:
        load_settings(None, env=env)
    assert "DRIFTWIRE_KAFKA_SASL_PASSWORD_FILE" in str(info.value)
    (tmp_path / "list").write_text("- a\n- b\n")
    env = {"DRIFTWIRE_BRIDGES_WEBHOOK_HEADERS_FILE": str(tmp_path / "list")}
    with pytest.raises(ConfigError, match="must hold a YAML mapping"):
        load_settings(None, env=env)


def test_logs_mask_every_secret_the_settings_registered() -> None:
    load_settings(None, env={"DRIFTWIRE_BRIDGES_PAGERDUTY_ROUTING_KEY": ROUTING})
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    log = logging.getLogger("driftwire.test")
    log.warning("refused %s", ROUTING, extra={"fields": {"error": f"echo {ROUTING}"}})
    try:
        raise RuntimeError(f"receiver said {ROUTING}")
    except RuntimeError:
        log.exception("failed")
    text = stream.getvalue()
    assert text.count(_secrets.MASK) == 3  # the message, the field, the exception
    _no_sentinel(text)
    logging.getLogger().handlers.clear()


def test_the_cli_error_line_masks_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"kafka:\n  sasl_password: {SASL}\n  security_protocol: SASL_SSL\n")
    done = subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", "worker", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr  # one line
    assert "kafka" in done.stderr and "sasl_mechanism" in done.stderr
    _no_sentinel(done.stdout + done.stderr)
