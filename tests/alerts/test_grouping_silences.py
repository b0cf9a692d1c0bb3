"""Alert policy across conditions: upstream-change incidents and silences (maintenance windows)."""

from __future__ import annotations

import orjson
import pytest
from scenarios import MINUTE, SEGMENT, START, minute, of, pipeline, run, small, table

from driftwire.alerts.alert import Alert
from driftwire.alerts.silences import Silence, parse_matcher
from driftwire.offline.generator import Change, generate
from driftwire.ops.config import ConfigError, load_settings

T, E = START + 30 * MINUTE, START + 50 * MINUTE
FOUR = ("age", "income", "tenure_days", "sessions_7d")


def shifted(*features: str, until: int | None = E, keep: str | None = None) -> list[Change]:
    return [Change(f, T, 2.0, end_ms=None if f == keep else until) for f in features]


def test_many_features_at_once_are_one_upstream_change_incident() -> None:
    alerts = run(generate(small(15_000, 70, *shifted(*FOUR), numeric=4)))
    assert [row[1:] for row in table(alerts)] == [
        ("firing", "upstream_change", "all", "", "breaching_inputs"),
        ("resolved", "upstream_change", "all", "", "breaching_inputs"),
    ]
    # K = 2 windows after the change; resolved once (almost) no shifted bucket is left in
    # the window (the changes end at minute 50) and 5 windows more (detect.resolve_windows)
    assert minute(alerts[0].evaluated_at_ms) == 32
    assert 56 <= minute(alerts[1].evaluated_at_ms) <= 59
    incident = alerts[0]
    assert incident.labels["severity"] == "critical"
    assert incident.evidence["features"] == dict.fromkeys(sorted(FOUR), 3)  # eu, us, all
    members = incident.evidence["members"]
    assert len(members) == incident.evidence["member_count"] == 12
    assert all(m["kind"] == "data_drift" and m["value"] >= m["threshold"] for m in members)
    assert "4 features breach at once in 2 segments" in incident.summary
    assert alerts[1].fingerprint == incident.fingerprint


def test_member_states_stay_available_while_the_incident_fires() -> None:
    p = pipeline()
    alerts = list(p.run(generate(small(12_000, 45, *shifted(*FOUR, until=None), numeric=4))))
    assert [a.kind for a in alerts] == ["upstream_change"]
    firing = {
        (labels["feature"], labels["segment"])
        for labels, _, _, _, severity in p.detector.condition_samples()
        if labels["kind"] == "data_drift" and severity
    }
    assert {f for f, _ in firing} == set(FOUR)
    assert len(firing) == 12


def test_members_still_firing_when_the_incident_ends_are_announced_then() -> None:
    changes = shifted(*FOUR, keep="age")
    alerts = run(generate(small(15_000, 70, *changes, numeric=4)))
    incident_end = next(a for a in alerts if a.kind == "upstream_change" and a.status == "resolved")
    late = [a for a in of(alerts, "data_drift") if a.labels["feature"] == "age"]
    assert {a.labels["segment"] for a in late} == {"all", SEGMENT, "region=us,tier=gold"}
    for alert in late:
        assert alert.status == "firing"
        assert alert.evaluated_at_ms == incident_end.evaluated_at_ms
        assert minute(alert.starts_at_ms) <= 33  # firing since the incident began
    assert not [a for a in of(alerts, "data_drift") if a.labels["feature"] != "age"]


def silenced(*silences: dict[str, object]) -> list[Alert]:
    change = Change("income", T, 2.0, SEGMENT, end_ms=E)
    return run(generate(small(15_000, 70, change)), alerts={"silences": list(silences)})


def test_a_silence_holds_alerts_back_until_it_ends() -> None:
    window = {"starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-01-01T00:40:00Z"}
    alerts = silenced({"matchers": ['feature="income"', 'kind=~"data_.*"'], **window})
    fired = of(alerts, "data_drift", "firing")
    assert {a.labels["segment"] for a in fired} == {SEGMENT, "all"}
    assert {minute(a.evaluated_at_ms) for a in fired} == {40}  # when the silence ended
    assert {minute(a.starts_at_ms) for a in fired} <= {32, 33, 34}  # when they began
    assert {a.fingerprint for a in of(alerts, "data_drift", "resolved")} == {
        a.fingerprint for a in fired
    }


def test_a_silence_over_the_whole_life_of_an_alert_emits_nothing() -> None:
    assert silenced({"matchers": ['model="churn"']}) == []  # no range: always active


def test_a_silence_that_does_not_match_changes_nothing() -> None:
    def fired(alerts: list[Alert]) -> set[tuple[str, str]]:
        return {(a.labels["segment"], a.labels["feature"]) for a in alerts if a.status == "firing"}

    plain = silenced()
    assert fired(plain) == {("all", "income"), (SEGMENT, "income")}
    assert silenced({"matchers": ['feature="age"']}) == plain  # every alert, every field
    muted = silenced({"matchers": ['feature="income"', 'segment!="all"']})
    assert muted == [a for a in plain if a.labels["segment"] == "all"]


def test_matchers() -> None:
    labels = {"model": "churn", "segment": "region=eu,tier=gold"}
    assert parse_matcher('model="churn"').matches(labels)
    assert parse_matcher("model=churn").matches(labels)
    assert not parse_matcher('model!="churn"').matches(labels)
    assert parse_matcher('segment=~"region=eu.*"').matches(labels)
    assert not parse_matcher('segment=~"eu"').matches(labels)  # anchored, as Alertmanager
    assert parse_matcher('segment!~"region=us.*"').matches(labels)
    assert parse_matcher('feature=""').matches(labels)  # absent label = empty string
    with pytest.raises(ValueError):
        parse_matcher("model~churn")
    with pytest.raises(ValueError):
        parse_matcher('model=~"("')
    s = Silence.build(['model="churn"'], starts_ms=10, ends_ms=20)
    assert [s.active(t) for t in (9, 10, 19, 20)] == [False, True, True, False]


@pytest.mark.parametrize(
    "silence",
    [
        {"matchers": ["model~churn"]},
        {"matchers": []},
        {"matchers": ['model="a"'], "starts_at": "2026-01-02T00:00:00Z", "ends_at": "2026-01-01"},
        {"matchers": ['model="a"'], "starts_at": "2026-01-02T00:00:00"},
    ],
)
def test_bad_silences_stop_start_up_naming_the_key(silence: dict[str, object]) -> None:
    env = {"DRIFTWIRE_ALERTS_SILENCES": orjson.dumps([silence]).decode()}
    with pytest.raises(ConfigError) as info:
        load_settings(None, env=env)
    assert "alerts.silences" in str(info.value)


def test_an_incident_is_re_sent_when_a_member_joins_and_resolves_listing_every_member() -> None:
    later = Change("basket_value", START + 40 * MINUTE, 2.0, end_ms=E)
    alerts = of(
        run(generate(small(15_000, 70, *shifted(*FOUR), later, numeric=5))), "upstream_change"
    )
    first, *resent, end = alerts
    assert [a.status for a in alerts] == ["firing"] * (1 + len(resent)) + ["resolved"]
    assert {a.fingerprint for a in alerts} == {first.fingerprint}
    assert "basket_value" not in first.evidence["features"]
    joined = next(a for a in resent if "basket_value" in a.evidence["features"])
    assert 41 <= minute(joined.evaluated_at_ms) <= 44  # K = 2 windows after its change
    assert joined.starts_at_ms == first.starts_at_ms
    assert {m["feature"] for m in joined.evidence["joined"]} == {"basket_value"}
    assert "joined: basket_value@" in joined.summary
    assert set(joined.evidence["features"]) == {*FOUR, "basket_value"}
    everyone = {(m["feature"], m["segment"]) for m in end.evidence["members"]}
    assert {f for f, _ in everyone} == {*FOUR, "basket_value"}
    assert end.evidence["member_count"] == len(everyone) == 15
    assert "it had 15 conditions of 5 features" in end.summary
