"""Hot reload: the pure diff of settings, the reloader on a real file, and a detector taking
reloaded thresholds and silences."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from scenarios import MINUTE, SEGMENT, START, of, pipeline, small

from driftwire.alerts.alert import Alert
from driftwire.offline.generator import Change, generate
from driftwire.ops.config import Settings, load_settings
from driftwire.ops.reload import ConfigReloader, config_hash, diff_settings

BASE: dict[str, Any] = {
    "kafka": {"bootstrap_servers": "broker:9092", "sasl_password": "s3cret"},
    "detect": {"thresholds": {"psi": [0.1, 0.25]}},
}


def settings(doc: dict[str, Any]) -> Settings:
    return Settings.model_validate(doc)


def with_(doc: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    for name, values in sections.items():
        out.setdefault(name, {}).update(values)
    return out


def test_the_diff_splits_live_keys_from_those_that_need_a_restart() -> None:
    old = settings(BASE)
    new = settings(
        with_(
            BASE,
            kafka={"bootstrap_servers": "other:9092", "sasl_password": "changed"},
            topics={"events": "inference-v2"},
            detect={
                "thresholds": {"psi": [0.2, 0.3], "ks": [0.1, 0.2]},
                "features": {"age": {"min_effect": 0.1}},
                "window_buckets": 10,
            },
            alerts={"silences": [{"matchers": ['model="churn"']}]},
        )
    )
    diff = diff_settings(old, new)
    assert [c.key for c in diff.live] == [
        "alerts.silences",
        "detect.features.age.min_effect",
        "detect.thresholds.ks",
        "detect.thresholds.psi",
    ]
    assert [c.key for c in diff.restart] == [
        "detect.window_buckets",
        "kafka.bootstrap_servers",
        "kafka.sasl_password",
        "topics.events",
    ]
    text = diff.describe()
    assert text == (
        "applied: alerts.silences 0 silences -> 1 silence; detect.features.age.min_effect "
        "(unset) -> 0.1; detect.thresholds.ks (unset) -> [0.1,0.2]; detect.thresholds.psi "
        "[0.1,0.25] -> [0.2,0.3] | needs a restart (the running value is kept): "
        'detect.window_buckets 5 -> 10; kafka.bootstrap_servers "broker:9092" -> '
        '"other:9092"; kafka.sasl_password *** -> ***; topics.events "inference-events" -> '
        '"inference-v2"'
    )
    assert "s3cret" not in text and "changed" not in text
    running = diff.apply(old, new)
    assert running.detect.thresholds == {"psi": (0.2, 0.3), "ks": (0.1, 0.2)}
    assert running.detect.features == {"age": {"min_effect": 0.1}}
    assert len(running.alerts.silences) == 1
    assert running.kafka == old.kafka and running.topics == old.topics
    assert running.detect.window_buckets == 5
    assert config_hash(running) not in (config_hash(old), config_hash(new))
    assert diff_settings(running, running).live == ()


def test_the_same_settings_are_no_change_and_the_same_hash() -> None:
    assert not diff_settings(settings(BASE), settings(BASE))
    assert config_hash(settings(BASE)) == config_hash(settings(BASE))
    removed = diff_settings(settings(BASE), settings({"kafka": BASE["kafka"]}))
    assert [str(c) for c in removed.live] == ["detect.thresholds.psi [0.1,0.25] -> (unset)"]


class Applied:
    def __init__(self) -> None:
        self.settings: list[Settings] = []
        self.hashes: list[tuple[str, str]] = []

    def __call__(self, s: Settings) -> None:
        self.settings.append(s)

    def hash(self, value: str, result: str) -> None:
        self.hashes.append((value, result))


def reloader(tmp_path: Path, doc: dict[str, Any]) -> tuple[Path, ConfigReloader, Applied]:
    path = tmp_path / "driftwire.yaml"
    path.write_text(yaml.safe_dump(doc))
    applied = Applied()
    r = ConfigReloader(path, load_settings(path, env={}), applied, on_hash=applied.hash, env={})
    return path, r, applied


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if "config reload" in r.msg]


def test_a_reload_applies_live_keys_and_logs_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="driftwire.ops.reload")
    path, r, applied = reloader(tmp_path, BASE)
    first = r.hash
    path.write_text(yaml.safe_dump(with_(BASE, detect={"thresholds": {"psi": [0.3, 0.5]}})))
    assert r.reload("SIGHUP") == "applied"
    assert lines(caplog) == [
        ("INFO", "config reloaded (SIGHUP): applied: detect.thresholds.psi [0.1,0.25] -> "
         "[0.3,0.5]"),
    ]  # fmt: skip
    assert [s.detect.thresholds["psi"] for s in applied.settings] == [(0.3, 0.5)]
    assert applied.hashes == [(r.hash, "applied")] and r.hash != first
    caplog.clear()
    assert r.reload("SIGHUP") == "unchanged"
    assert lines(caplog) == [("INFO", "config reload (SIGHUP): nothing changed")]
    assert len(applied.settings) == 1


def test_a_change_that_needs_a_restart_is_reported_not_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, r, applied = reloader(tmp_path, BASE)
    first = r.hash
    path.write_text(yaml.safe_dump(with_(BASE, topics={"alerts": "alerts-v2"})))
    assert r.reload("SIGHUP") == "restart_needed"
    assert lines(caplog) == [
        ("WARNING", "config reloaded (SIGHUP): needs a restart (the running value is kept): "
         'topics.alerts "driftwire-alerts" -> "alerts-v2"'),
    ]  # fmt: skip
    assert applied.settings == [] and r.hash == first
    assert r.running.topics.alerts == "driftwire-alerts"
    assert applied.hashes == [(first, "restart_needed")]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("detect: {thresholds: {psi: high}}", "detect.thresholds.psi"),
        ("detect: [unclosed", "is not valid YAML"),
        ("detect: {window_bucket: 3}", "'detect.window_bucket': unknown key"),
    ],
)
def test_a_bad_file_keeps_the_running_config_and_says_why_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, why: str
) -> None:
    path, r, applied = reloader(tmp_path, BASE)
    before = r.running
    path.write_text(text)
    assert r.reload("file changed") == "rejected"
    ((level, message),) = lines(caplog)
    assert level == "ERROR"
    assert message.startswith("config reload (file changed) rejected, the running config is kept")
    assert why in message and "\n" not in message
    assert r.running is before and applied.settings == []
    assert applied.hashes == [(r.hash, "rejected")]


def test_the_watcher_reloads_when_the_file_changes(tmp_path: Path) -> None:
    path, r, applied = reloader(tmp_path, BASE)

    async def scenario() -> list[str]:
        stop = asyncio.Event()
        task = asyncio.create_task(r.watch(stop, interval_s=0.05))
        await asyncio.sleep(0.2)
        untouched = [h for _, h in applied.hashes]
        path.write_text(
            yaml.safe_dump(with_(BASE, detect={"features": {"age": {"min_effect": 0.2}}}))
        )
        for _ in range(100):
            if applied.hashes:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task
        return untouched

    assert asyncio.run(scenario()) == []  # nothing happens while the file stays the same
    assert [result for _, result in applied.hashes] == ["applied"]
    assert applied.settings[0].detect.features == {"age": {"min_effect": 0.2}}


# -- a detector taking reloaded settings ---------------------------------------------------


def stream() -> list[bytes]:
    """income shifts by 2 sd in one segment from minute 20 (of 45)."""
    return list(generate(small(12_000, 45, Change("income", START + 20 * MINUTE, 2.0, SEGMENT))))


def run_reloading(values: list[bytes], doc: dict[str, Any] | None) -> list[Alert]:
    """The stream in memory; at minute 15 (before the shift) the settings ``doc`` are
    reloaded into the detector as the worker does."""
    p = pipeline()
    half = len(values) // 3
    alerts = p.feed(values[:half])
    if doc is not None:
        new = Settings.model_validate(
            {**p.settings.model_dump(mode="json"), **doc}  # sections replaced whole
        )
        running = diff_settings(p.settings, new).apply(p.settings, new)
        p.detector.reconfigure(running.detect, running.alerts)
    for start in range(half, len(values), 2000):
        alerts += p.feed(values[start : start + 2000])
    return alerts + p.finish()


def test_a_reloaded_silence_holds_back_the_alerts_it_matches() -> None:
    values = stream()
    plain = run_reloading(values, None)
    assert of(plain, "data_drift", "firing")
    silence = {"alerts": {"silences": [{"matchers": ['feature="income"']}]}}
    silenced = run_reloading(values, silence)
    assert of(silenced, "data_drift") == []
    assert silenced == [a for a in plain if a.labels.get("feature") != "income"]


def test_reloaded_thresholds_apply_from_the_next_window() -> None:
    values = stream()
    fixed = {"rule": "fixed", "window_buckets": 5, "min_count": 200, "min_reference_count": 400}
    p = pipeline(**fixed)
    assert of(list(p.run(values)), "data_drift", "firing")
    lenient = {"detect": {**fixed, "thresholds": {"psi": [50.0, 100.0]}}}

    def reloaded() -> list[Alert]:
        q = pipeline(**fixed)
        third = len(values) // 3
        out = q.feed(values[:third])
        new = Settings.model_validate({**q.settings.model_dump(mode="json"), **lenient})
        running = diff_settings(q.settings, new).apply(q.settings, new)
        assert running.detect.rule == "fixed" and running.detect.thresholds["psi"] == (50, 100)
        q.detector.reconfigure(running.detect, running.alerts)
        for start in range(third, len(values), 2000):
            out += q.feed(values[start : start + 2000])
        return out + q.finish()

    assert of(reloaded(), "data_drift", "firing") == []


def test_secrets_survive_a_reload_and_a_changed_secret_is_seen_not_shown() -> None:
    sasl = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "u",
        "sasl_password": "s3cret",
    }
    old = settings({"kafka": sasl})
    new = settings(with_({"kafka": sasl}, alerts={"renotify_seconds": 60}))
    running = diff_settings(old, new).apply(old, new)
    password = running.kafka.sasl_password
    assert password is not None and password.get_secret_value() == "s3cret"
    assert running.alerts.renotify_seconds == 60
    changed = settings(with_({"kafka": sasl}, kafka={"sasl_password": "other"}))
    diff = diff_settings(old, changed)
    assert [str(c) for c in diff.restart] == ["kafka.sasl_password *** -> ***"]
    assert "other" not in diff.describe() and "s3cret" not in diff.describe()
