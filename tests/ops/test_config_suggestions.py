"""Start-up is not stopped by options of features nobody enabled, and every config error's
suggestion is a value that, applied, validates. ``driftwire config check`` shows the
effective settings with secrets masked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftwire.errors import REMOVE, ConfigError
from driftwire.ops.config import Settings, apply_suggestion, load_settings


def _load(tmp_path: Path, data: dict[str, Any]) -> Settings:
    path = tmp_path / "driftwire.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_settings(path, env={})


def test_a_day_long_bucket_alone_starts_and_the_slots_follow_it(tmp_path: Path) -> None:
    settings = _load(tmp_path, {"profile": {"bucket_seconds": 86400}})
    assert settings.detect.references.slot_minutes == 1440


def test_slots_nobody_uses_are_not_checked(tmp_path: Path) -> None:
    data = {
        "profile": {"bucket_seconds": 420},  # 7 min: no whole number of them makes a day
        "detect": {"latency": {"reference": "baseline"}, "references": {"slot_minutes": 60}},
    }
    assert _load(tmp_path, data).profile.bucket_seconds == 420


def test_an_explicit_slot_is_kept(tmp_path: Path) -> None:
    data = {"profile": {"bucket_seconds": 300}, "detect": {"references": {"slot_minutes": 120}}}
    assert _load(tmp_path, data).detect.references.slot_minutes == 120


BAD: dict[str, dict[str, Any]] = {
    "slot not a multiple of a day-long bucket": {
        "profile": {"bucket_seconds": 86400},
        "detect": {"references": {"slot_minutes": 60}},
    },
    "slot not dividing a day": {"detect": {"references": {"slot_minutes": 7}}},
    "bucket no slot can tile": {"profile": {"bucket_seconds": 420}},
    "trailing shorter than a slot": {"detect": {"references": {"trailing_hours": 0.5}}},
    "override key with a slash": {"detect": {"references": {"overrides": {"/churn": "seasonal"}}}},
    "not an integer": {"consumer": {"max_batch_records": "lots"}},
    "out of range": {"detect": {"latency": {"min_ratio": 0.5}}},
    "not one of the choices": {"log": {"level": "LOUD"}},
    "a typo in a key": {"consumer": {"max_batch_record": 500}},
    "a typo in a nested key": {"detect": {"references": {"slot_minute": 120}}},
    "a bad port": {"http": {"port": 70000}},
    "a negative timeout": {"kafka": {"startup_timeout_seconds": -1}},
}


@pytest.mark.parametrize("data", BAD.values(), ids=BAD.keys())
def test_every_suggestion_applied_validates(tmp_path: Path, data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, data)
    error = caught.value
    assert error.suggestion, str(error)
    renamed = REMOVE in error.suggestion.values()
    for key, value in error.suggestion.items():  # the suggestion is what the line says
        if value == REMOVE:
            continue
        assert key.rsplit(".", 1)[-1] in str(error)
        if not renamed and isinstance(value, int | float | str):
            assert (f"{value:g}" if isinstance(value, float) else str(value)) in str(error)
    fixed = apply_suggestion(data, error.suggestion)
    _load(tmp_path, fixed)  # validates


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_config_check_prints_the_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    path = tmp_path / "driftwire.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "profile": {"bucket_seconds": 86400},
                "kafka": {
                    "security_protocol": "SASL_PLAINTEXT",
                    "sasl_mechanism": "PLAIN",
                    "sasl_username": "svc",
                },
                "bridges": {"webhook_headers": {"Authorization": "Bearer s3cret-token"}},
            }
        )
    )
    secret = tmp_path / "password"
    secret.write_text("hunter2-password\n")
    out = _cli(
        "config", "check", str(path), env={"DRIFTWIRE_KAFKA_SASL_PASSWORD_FILE": str(secret)}
    )
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout and "s3cret" not in out.stdout
    shown = yaml.safe_load(out.stdout)
    assert shown["kafka"]["sasl_password"] == "***"
    assert shown["bridges"]["webhook_headers"] == {"Authorization": "***"}
    assert shown["detect"]["references"]["slot_minutes"] == 1440
    assert shown["kafka"]["sasl_username"] == "svc"
    assert out.stdout.splitlines()[0].startswith(f"# {path}: valid.")


def test_config_check_of_a_bad_file_is_one_line_with_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "driftwire.yaml"
    path.write_text("consumer:\n  max_batch_record: 500\n")
    out = _cli("config", "check", str(path))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "driftwire: config error at 'consumer.max_batch_record': unknown key (did you mean "
        "max_batch_records? known keys here: auto_offset_reset, fetch_timeout_ms, group_id, "
        "max_batch_records, max_poll_interval_ms, session_timeout_ms, shutdown_timeout_seconds)"
    ]
