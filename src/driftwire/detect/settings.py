"""Settings of stage 2's detection core: windows, statistics, references, latency, data quality,
throughput and canary comparison.

These are the ``detect`` section of the config file; :mod:`driftwire.ops.config` composes them
with the sections of the shells. The core takes them as plain values and knows nothing of YAML or
environment variables.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from driftwire._settings import Section as _Section
from driftwire.errors import ConfigError

ReferenceKind = Literal["baseline", "trailing_window", "seasonal"]
Period = Literal["day", "week"]
#: what latency is compared with: a reference kind, or "references" (as drift)
LatencyReferenceKind = Literal["seasonal", "trailing_window", "baseline", "references"]
_PERIOD_MS = {"day": 86_400_000, "week": 7 * 86_400_000}


class LatencySettings(_Section):
    """Latency anomalies per (model, version, segment): spikes against the reference and creep.

    See :mod:`driftwire.detect.latency` for the statistics and the choice of parameters.
    ``reference`` is latency's own reference, independent of the drift reference
    (``detect.references``): by default the same hour of each of the last 7 days, so a daily
    cycle is not an anomaly and a weekly one (weekends) is averaged over a whole week of days.
    """

    enabled: bool = True
    quantiles: tuple[float, ...] = Field(
        (0.5, 0.95, 0.99), description="window percentiles computed, exported and alerted on"
    )
    spike_factor: tuple[float, float] = Field(
        (3.0, 10.0), description="[warning, critical]: window percentile / reference percentile"
    )
    slo_ms: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="optional absolute SLOs, e.g. {p99: [250, 1000]} (warning, critical ms)",
    )
    min_tail_events: int = Field(
        5, ge=1, description="a percentile q is judged only with >= this many events above it"
    )
    creep: bool = True
    creep_delta: float = Field(0.05, ge=0, description="Page-Hinkley delta (log of p95)")
    creep_threshold: float = Field(1.5, gt=0, description="Page-Hinkley lambda (log of p95)")
    creep_min_buckets: int = Field(10, ge=1, description="buckets before creep can fire")
    creep_min_bucket_count: int = Field(
        50, ge=1, description="a bucket with fewer latencies is left out of the p95 series"
    )
    creep_min_ratio: float = Field(
        1.2, gt=1, description="creep fires only while window p95 / reference p95 >= this"
    )
    creep_resolve_ratio: float = Field(
        1.1, ge=1, description="a creep alert resolves when the ratio falls below this"
    )
    rule: Literal["tail_count", "ratio"] = Field(
        "tail_count",
        description="tail_count: a percentile breaches when its window/reference ratio is at "
        "least min_ratio AND the window's count above the reference percentile is significant "
        "at alpha; ratio: the ratio alone against spike_factor (the earlier rule)",
    )
    alpha: float = Field(
        1e-4, gt=0, lt=0.5, description="tail_count: one-sided significance of a tail count"
    )
    min_ratio: float = Field(
        1.5, gt=1, description="tail_count: relevance floor, window / reference percentile"
    )
    resolve_ratio: float = Field(
        1.2, ge=1, description="tail_count: a firing percentile resolves below this ratio"
    )
    reference: LatencyReferenceKind = Field(
        "seasonal",
        description="what latency is compared with: seasonal (the same hour of the last "
        "seasonal_periods days), trailing_window (detect.references.trailing_hours), baseline, "
        "or references (follow detect.references, as drift does); an override "
        "detect.references.overrides['model/latency_ms'] wins",
    )
    seasonal_period: Period = Field(
        "day", description="period of latency's own seasonal reference (reference: seasonal)"
    )
    seasonal_periods: int = Field(
        7, ge=1, le=52, description="past periods merged by latency's own seasonal reference"
    )

    @model_validator(mode="after")
    def _consistent(self) -> LatencySettings:
        if not self.quantiles or not all(0 < q < 1 for q in self.quantiles):
            raise ValueError("quantiles must be a non-empty list of numbers in (0, 1)")
        names = {f"p{q * 100:g}" for q in self.quantiles}
        for key, (warning, critical) in {**self.slo_ms, "spike_factor": self.spike_factor}.items():
            if key != "spike_factor" and key not in names:
                raise ValueError(f"slo_ms: {key!r} is not one of the quantiles {sorted(names)}")
            if not 0 < warning <= critical:
                raise ValueError(f"{key}: need 0 < warning <= critical, got {warning}, {critical}")
        if self.creep_resolve_ratio >= self.creep_min_ratio:
            raise ValueError("creep_resolve_ratio must be below creep_min_ratio")
        if self.resolve_ratio >= self.min_ratio:
            raise ValueError("resolve_ratio must be below min_ratio")
        if self.min_ratio > self.spike_factor[1]:
            raise ValueError("min_ratio must not exceed the critical spike_factor")
        return self


class QualitySettings(_Section):
    """Data-quality checks per (model, version, segment, feature), separate from drift.

    See :mod:`driftwire.detect.quality` for the statistics and the default thresholds.
    """

    enabled: bool = True
    z: float = Field(
        4.0, gt=0, description="one-sided z a rate increase must reach at these sample sizes"
    )
    thresholds: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="{statistic: [warning, critical]} overrides (missing_rate, wrong_type, "
        "non_finite, unseen_share, new_category, feature_added, feature_removed)",
    )
    new_category_min_count: int = Field(
        5,
        ge=1,
        description="values a never-seen category needs (since it first appeared, or in the "
        "window) before new_category may report it; its share floor is "
        "thresholds.new_category, 0.5% by default",
    )
    new_category_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="level of the one-sided binomial test of share <= half the floor on a "
        "never-seen category's values since it first appeared (see detect.quality)",
    )
    new_category_windows: int = Field(
        2,
        ge=1,
        description="windows a never-seen category is counted from its first appearance; "
        "after that it is no longer new and is judged on one window's values",
    )
    new_category_window_alpha: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="level of the same test on one window's values (a category no longer "
        "new, or not counted since its first appearance)",
    )
    new_category_max_tracked: int = Field(
        32,
        ge=1,
        le=4096,
        description="never-seen categories kept per (version, segment, input); beyond that "
        "the one seen longest ago is forgotten",
    )


class ThroughputSettings(_Section):
    """Event-rate alerts per (model, version). See :mod:`driftwire.detect.throughput`."""

    enabled: bool = True
    no_data_buckets: int = Field(
        3, ge=0, description="silent buckets (while other traffic flows) before 'no data'; 0: off"
    )
    rate_drop: tuple[float, float] | None = Field(
        (5.0, 20.0), description="[warning, critical] factor below the trailing rate; null: off"
    )
    rate_jump: tuple[float, float] | None = Field(
        (5.0, 20.0), description="[warning, critical] factor above the trailing rate; null: off"
    )
    reference_buckets: int = Field(
        60, ge=2, description="trailing buckets (before the window) the rate is compared with"
    )


class CanarySettings(_Section):
    """A newer live version against the one it replaces, same window
    (:mod:`driftwire.detect.canary`)."""

    enabled: bool = True
    thresholds: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="{statistic: [warning, critical]} for the prediction comparison; default: "
        "detect.thresholds, then the statistic's defaults",
    )
    latency_factor: tuple[float, float] | None = Field(
        (2.0, 5.0),
        description="[warning, critical]: canary percentile / previous version's; null: off",
    )

    @model_validator(mode="after")
    def _ordered(self) -> CanarySettings:
        for key, (warning, critical) in {
            **self.thresholds,
            "latency_factor": self.latency_factor or (1.0, 1.0),
        }.items():
            if not 0 < warning <= critical:
                raise ValueError(f"{key}: need 0 < warning <= critical, got {warning}, {critical}")
        return self


class ReferenceSettings(_Section):
    """What each model, or feature, is compared with. See :mod:`driftwire.detect.trailing`.

    ``baseline``: the published baseline, else the version's first complete window, frozen.
    ``trailing_window``: the previous ``trailing_hours`` of the version's own traffic.
    ``seasonal``: the same slot of the period (hour of the week by default) over the last
    ``seasonal_periods`` periods. Both are built from slot profiles of ``slot_minutes`` and
    fall back to ``baseline`` until they have ``min_reference_count`` events (and, seasonal,
    one past period).
    """

    default: ReferenceKind = "baseline"
    overrides: dict[str, ReferenceKind] = Field(
        default_factory=dict,
        description='per model or model/feature, e.g. {churn: seasonal, "churn/age": baseline}',
    )
    trailing_hours: float = Field(24.0, gt=0, description="span of a trailing_window reference")
    seasonal_period: Period = "week"
    seasonal_periods: int = Field(4, ge=1, le=52, description="past periods merged (seasonal)")
    slot_minutes: float = Field(60.0, gt=0, description="slot profiles kept per segment")

    def kind(self, model: str, feature: str | None = None) -> ReferenceKind:
        """The reference kind of ``model`` (or of one of its features)."""
        found = self.overrides.get(f"{model}/{feature}") if feature is not None else None
        return found or self.overrides.get(model) or self.default

    def kinds(self, model: str) -> set[ReferenceKind]:
        """Every reference kind ``model`` or one of its features uses."""
        prefix = f"{model}/"
        found = {k for key, k in self.overrides.items() if key.startswith(prefix)}
        return found | {self.kind(model)}

    @property
    def slot_ms(self) -> int:
        return round(self.slot_minutes * 60_000)

    @property
    def period_ms(self) -> int:
        return _PERIOD_MS[self.seasonal_period]

    def check(self, bucket_ms: int, *, slots_used: bool = True) -> None:
        """Refuse slots that do not tile buckets and periods (needs ``profile.bucket_seconds``),
        when slots are used at all, and override keys that name nothing."""
        for name, kind in self.overrides.items():
            if not name or name.startswith("/") or name.endswith("/"):
                fixed = {k: v for k, v in self.overrides.items() if k != name}
                if name.strip("/"):
                    fixed[name.strip("/")] = kind
                raise ConfigError(
                    f"detect.references.overrides.{name}",
                    "a key is a model name or model/feature",
                    'e.g. churn or "churn/age"',
                    suggestion={"detect.references.overrides": fixed},
                )
        if not slots_used:
            return
        key = "detect.references.slot_minutes"
        slot = self.slot_ms
        periods = (self.period_ms,)
        if slot % bucket_ms or self.period_ms % slot:
            raise slot_error(key, self.slot_minutes, bucket_ms, periods, self.seasonal_period)
        if self.trailing_hours * 3_600_000 < slot:
            raise ConfigError(
                "detect.references.trailing_hours",
                f"{self.trailing_hours:g} h is shorter than one {self.slot_minutes:g} min slot",
                f"make it at least slot_minutes / 60 = {self.slot_minutes / 60:g}",
                suggestion={"detect.references.trailing_hours": self.slot_minutes / 60},
            )


def slot_minutes_for(bucket_ms: int, periods_ms: tuple[int, ...] = (86_400_000,)) -> float | None:
    """The slot that follows the bucket: the shortest whole number of buckets, at least an hour,
    that divides every period; ``None`` when no number of buckets divides them.

    >>> slot_minutes_for(60_000), slot_minutes_for(86_400_000), slot_minutes_for(90 * 60_000)
    (60.0, 1440.0, 90.0)
    >>> slot_minutes_for(7 * 60_000) is None
    True
    """
    day = min(periods_ms)
    k = max(1, -(-3_600_000 // bucket_ms))  # ceil: at least an hour
    while k * bucket_ms <= day:
        if all(p % (k * bucket_ms) == 0 for p in periods_ms):
            return k * bucket_ms / 60_000
        k += 1
    return None


def slot_error(
    key: str, minutes: float, bucket_ms: int, periods_ms: tuple[int, ...], period: str
) -> ConfigError:
    """The error for ``minutes`` slots that do not tile the buckets or the periods, with a slot
    that does (or, when no slot can, a bucket that can) as the suggestion."""
    fits = slot_minutes_for(bucket_ms, (*periods_ms, _PERIOD_MS["day"]))  # latency's period too
    if fits is None:
        return ConfigError(
            "profile.bucket_seconds",
            f"{bucket_ms / 1000:g} s buckets do not tile a day, which the slot profiles of "
            "seasonal and trailing references need",
            "use a divisor of a day, e.g. 60",
            suggestion={"profile.bucket_seconds": 60},
        )
    if round(minutes * 60_000) % bucket_ms:
        problem = (
            f"{minutes:g} min is not a whole number of {bucket_ms / 1000:g} s buckets "
            "(profile.bucket_seconds)"
        )
    else:
        problem = f"{minutes:g} min does not divide a {period}"
    return ConfigError(
        key,
        problem,
        f"use a multiple of the bucket that divides a day, e.g. {fits:g}",
        suggestion={key: fits},
    )


class DetectSettings(_Section):
    """Windows, references and thresholds of the detection stage.

    ``references`` chooses the reference per model and feature. Trailing and seasonal
    references keep slot profiles, the largest state of the stage: per model version,
    ``slots x segments x profile bytes``, where slots = ``seasonal_periods`` x period /
    ``slot_minutes`` (seasonal: 4 weeks of hours = 672) or ``trailing_hours`` x 60 /
    ``slot_minutes`` (24), and a profile is about 2.3 KB per numeric feature (10 numeric
    features x 9 segments x 672 slots ≈ 140 MB), in memory and in the state changelog. Only
    models that use them keep slots, and only as far back as they reach. Latency's default
    seasonal reference keeps slots for every model: while the drift reference is the baseline
    they hold the latency sketch alone (1.3-5 KB per slot and segment: 7 days of hours x 9
    segments ≈ 1,530 sketches ≈ 4-7 MB per version in memory, about 60% of that stored).
    """

    window_buckets: int = Field(5, ge=1)
    min_count: int = Field(200, ge=1)
    min_reference_count: int = Field(1000, ge=1)
    grace_seconds: float = Field(10.0, ge=0)
    #: how far the clocks of stage 1 and stage 2 may disagree: a partials-topic record whose
    #: watermark or bucket end is further ahead of stage 2's clock than stage 1's own bound
    #: (``profile.max_future_seconds`` plus one bucket) plus this is dead-lettered
    clock_skew_seconds: float = Field(60.0, ge=0)
    consecutive_windows: int = Field(2, ge=1)
    segments: bool = True
    statistics: dict[str, list[str]] = Field(
        default_factory=lambda: {"numeric": ["psi"], "categorical": ["psi"]},
        description="statistics computed and alerted on, per feature kind",
    )
    data_dir: str | None = None  # faust's local files; default: <tmp>/driftwire/<app id>

    @model_validator(mode="after")
    def _kinds_known(self) -> DetectSettings:
        unknown = set(self.statistics) - {"numeric", "categorical"}
        if unknown:
            raise ValueError(f"statistics: unknown feature kind {sorted(unknown)[0]!r}")
        return self

    thresholds: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="{statistic: [warning, critical]} of the fixed rule"
    )
    features: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rule: Literal["calibrated", "fixed"] = Field(
        "calibrated",
        description="calibrated: significance (p-value at the actual sizes, FDR-controlled) and "
        "relevance (effect >= min_effect); fixed: statistics against detect.thresholds",
    )
    fdr: Literal["auto", "bh", "by", "holm"] = Field(
        "auto",
        description="multiple-testing control over one model version's tests in one window: "
        "Benjamini-Hochberg (bh), Benjamini-Yekutieli (by), Holm's step-down (holm), or auto: "
        "Holm's step-down whose first cut-off is BH's q/m, or BY's q/(m c(m)) when the all "
        "aggregate is tested with its segments",
    )
    fdr_q: float = Field(0.01, gt=0, lt=1, description="the false-discovery rate q")
    min_effect: dict[str, float] = Field(
        default_factory=lambda: {"numeric": 0.05, "categorical": 0.02},
        description="smallest relevant effect: numeric in reference sds (normalised "
        "Wasserstein), categorical in share (total-variation distance)",
    )
    critical_effect: dict[str, float] = Field(
        default_factory=lambda: {"numeric": 0.5, "categorical": 0.10},
        description="effect from which a significant drift is critical",
    )
    significance: dict[str, list[str]] = Field(
        default_factory=lambda: {"numeric": ["ks"], "categorical": ["chi2"]},
        description="significance statistics of the calibrated rule, per feature kind "
        "(numeric: ks, psi, js; categorical: chi2, psi, js)",
    )
    ks_sketch_error: Literal["variance", "worst_case"] = Field(
        "variance",
        description="how the sketches' rank error widens the KS null: added to its variance, "
        "or subtracted from D whole (conservative, far less power at k=200)",
    )

    def latency_reference(self, model: str) -> tuple[ReferenceKind, Period, int]:
        """What ``model``'s latency is compared with: the reference kind, and the period and
        number of periods a seasonal one spans.

        An override ``detect.references.overrides["model/latency_ms"]`` wins, and so does
        ``detect.references`` under ``latency.reference: references``; both come with
        ``detect.references``' period. Else ``latency.reference`` with ``latency``'s period.

        >>> detect = DetectSettings()
        >>> detect.latency_reference("churn")
        ('seasonal', 'day', 7)
        >>> refs = {"overrides": {"churn/latency_ms": "baseline"}}
        >>> DetectSettings(references=refs).latency_reference("churn")
        ('baseline', 'week', 4)
        >>> follow = {"reference": "references"}
        >>> DetectSettings(latency=follow).latency_reference("churn")
        ('baseline', 'week', 4)
        """
        refs, lat, own = self.references, self.latency, self.latency.reference
        if own != "references" and f"{model}/latency_ms" not in refs.overrides:
            return own, lat.seasonal_period, lat.seasonal_periods
        return refs.kind(model, "latency_ms"), refs.seasonal_period, refs.seasonal_periods

    def slots_used(self) -> bool:
        """Whether any reference keeps slot profiles (seasonal or trailing, latency's too)."""
        slot_kinds = {"seasonal", "trailing_window"}
        refs = self.references
        if {refs.default, *refs.overrides.values()} & slot_kinds:
            return True
        return self.latency.enabled and self.latency.reference in slot_kinds

    def check(self, bucket_ms: int) -> None:
        """Refuse slots that do not tile buckets and periods, latency's period included; slots
        that no reference uses are not checked (the user did not ask for them)."""
        used = self.slots_used()
        self.references.check(bucket_ms, slots_used=used)
        period = self.latency.seasonal_period
        latency_seasonal = self.latency.enabled and self.latency.reference == "seasonal"
        if used and latency_seasonal and _PERIOD_MS[period] % self.references.slot_ms:
            raise slot_error(
                "detect.references.slot_minutes",
                self.references.slot_minutes,
                bucket_ms,
                (self.references.period_ms, _PERIOD_MS[period]),
                f"{period} (detect.latency.seasonal_period)",
            )

    @model_validator(mode="after")
    def _calibrated_consistent(self) -> DetectSettings:
        for table in (self.min_effect, self.critical_effect, self.significance):
            unknown = set(table) - {"numeric", "categorical"}
            if unknown:
                raise ValueError(f"unknown feature kind {sorted(unknown)[0]!r}")
        for kind in ("numeric", "categorical"):
            low = self.min_effect.get(kind, 0.05)
            high = self.critical_effect.get(kind, 0.5)
            if not 0 < low <= high:
                raise ValueError(f"{kind}: need 0 < min_effect <= critical_effect")
        known = {"numeric": ("ks", "psi", "js"), "categorical": ("chi2", "psi", "js")}
        for kind, names in self.significance.items():
            for name in names:
                if name not in known[kind]:
                    raise ValueError(f"significance.{kind}: unknown statistic {name!r}")
        return self

    latency: LatencySettings = LatencySettings()
    quality: QualitySettings = QualitySettings()
    throughput: ThroughputSettings = ThroughputSettings()
    references: ReferenceSettings = ReferenceSettings()
    group_min_features: int = Field(
        3,
        ge=0,
        description="features of one model version breaching (drift or data quality) in one "
        "window that make one upstream_change incident instead of separate alerts; 0: off",
    )
    group_min_segments: int = Field(
        0, ge=0, description="segments breaching at once that make an incident too; 0: off"
    )
    canary: CanarySettings = CanarySettings()
    retire_after_buckets: int = Field(
        1440,
        ge=0,
        description="a version without events for this many buckets while other versions of "
        "its model send is forgotten (state, conditions, gauges), and so is a model without "
        "events for this many buckets while other models send; 0: never",
    )
    unmatched_baseline_buckets: int = Field(
        15,
        ge=1,
        description="a loaded baseline whose model sent no events while this many buckets "
        "were evaluated (by the detector that owns the model's partials partition) is "
        "reported: a warning in the log, driftwire_baselines_unmatched, and in replay",
    )
    stale_windows: int = Field(
        10,
        ge=0,
        description="a condition without data (its segment, input, version or model stopped "
        "sending, or too few events to judge) for this many evaluated windows is forgotten; "
        "a firing one resolves first, saying it stopped receiving data; 0: never",
    )
    max_models: int = Field(
        1_000,
        ge=1,
        description="models kept per detector (one per owned partials partition); beyond it "
        "the model seen longest ago is retired (state, conditions, gauges)",
    )
    max_versions: int = Field(
        20,
        ge=1,
        description="versions kept per model; beyond it the version seen longest ago is "
        "retired (state, conditions, gauges) as if silent for retire_after_buckets",
    )
    resolve_windows: int = Field(
        5,
        ge=1,
        description="consecutive windows a firing condition's value must stay below its "
        "resolve level before it resolves (hysteresis; driftwire.alerts.policy); the default "
        "is the default window: a window wholly renewed since the value calmed",
    )
    resolve_ratio: float = Field(
        0.6,
        gt=0,
        le=1,
        description="the resolve level as a share of the warning threshold, for checks that "
        "set none of their own",
    )
