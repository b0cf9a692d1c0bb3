"""The Grafana dashboards of driftwire, generated from code with grafana-foundation-sdk.

    python dashboards/build.py            # rewrite dashboards/grafana/dashboards/*.json
    python dashboards/build.py --check    # exit 1 if the committed JSON is not what the code gives
    python dashboards/build.py --out DIR  # write the JSON into DIR instead

Three dashboards: *driftwire overview* (is the worker keeping up: events, invalid and late events,
lag, produced records, batch times, alerts firing, health; do the bridges deliver the alerts),
*driftwire model* (drift scores per feature and segment against their thresholds, for one
model, version and segment) and *driftwire model performance* (the truth stage: realized
performance per window with its completeness, the estimate before labels beside it, the actual
label distribution, the join's accounting). Every query uses only metrics that driftwire exports
(src/driftwire/metrics.py), and the tests run every expression against a real Prometheus
scraping a real worker and a real bridge.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    ReduceDataOptions,
    StackingConfig,
    VizLegendOptions,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    LineStyle,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Panel,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUT_DIR = Path(__file__).resolve().parent / "grafana" / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
TAG = "driftwire"

# The labels that identify one drift condition (driftwire_drift_score and its threshold).
CONDITION = "model, model_version, segment, feature, statistic"
MODEL_SELECTOR = 'model=~"$model", model_version=~"$version", segment=~"$segment"'
CONDITION_SELECTOR = f'{MODEL_SELECTOR}, feature=~"$feature"'


def query(expr: str, legend: str = "__auto", ref: str = "A") -> Dataquery:
    """A Prometheus range query."""
    return Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def instant(expr: str, ref: str) -> Dataquery:
    """An instant query returning a table (for the table panels)."""
    return (
        Dataquery()
        .expr(expr)
        .instant()
        .format(PromQueryFormat.TABLE)
        .ref_id(ref)
        .datasource(DATASOURCE)
    )


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


def legend_table(*calcs: str) -> VizLegendOptions:
    return (
        VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(list(calcs))
    )


class Layout:
    """Hands out stable panel ids (deep links such as ``viewPanel=7`` keep working)."""

    def __init__(self) -> None:
        self._next = 0

    def id(self) -> int:
        self._next += 1
        return self._next

    def row(self, title: str) -> dash.Row:
        return dash.Row(title).id(self.id())


def stat_panel(
    ids: Layout,
    title: str,
    description: str,
    expr: str,
    *,
    unit: str = "short",
    steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
    width: int = 4,
) -> stat.Panel:
    return (
        stat.Panel()
        .id(ids.id())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr))
        .unit(unit)
        .thresholds(thresholds(*steps))
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(BigValueColorMode.VALUE)
        .graph_mode(BigValueGraphMode.AREA)
        .height(4)
        .span(width)
    )


def series_panel(
    ids: Layout,
    title: str,
    description: str,
    targets: Sequence[Dataquery],
    *,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(ids.id())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .min(0)
        .fill_opacity(10)
        .line_width(1)
        .legend(legend_table("mean", "max", "lastNotNull"))
        .height(height)
        .span(width)
    )
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(60)
    return panel


def add(board: dash.Dashboard, *panels: Builder[Panel]) -> dash.Dashboard:
    for panel in panels:
        board = board.with_panel(panel)
    return board


def datasource_variable() -> dash.DatasourceVariable:
    return dash.DatasourceVariable("datasource").label("Data source").type("prometheus")


def query_variable(name: str, label: str, definition: str) -> dash.QueryVariable:
    """A multi-value variable from ``label_values(...)``; "All" means the regex ``.*``."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .query(definition)
        .datasource(DATASOURCE)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


def dashboard_links() -> dash.DashboardLink:
    return (
        dash.DashboardLink("driftwire")
        .type(DashboardLinkType.DASHBOARDS)
        .tags([TAG])
        .as_dropdown(True)
        .include_vars(False)
        .keep_time(True)
    )


def base(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .link(dashboard_links())
        .with_variable(datasource_variable())
    )


# -- overview ------------------------------------------------------------------------------


def overview() -> dash.Dashboard:
    ids = Layout()
    inst = 'instance=~"$instance"'
    board = base(
        "driftwire-overview",
        "driftwire overview",
        "Is driftwire keeping up? Events in, rejects, lateness, lag, output and alerts.",
    ).with_variable(
        query_variable("instance", "Worker", 'label_values(up{job="driftwire"}, instance)')
    )

    board = board.with_row(ids.row("Now"))
    board = add(
        board,
        stat_panel(
            ids,
            "Events / s",
            "Inference events read from the input topic per second, all workers.",
            f"sum(rate(driftwire_events_consumed_total{{{inst}}}[{RATE}]))",
            unit="short",
        ),
        stat_panel(
            ids,
            "Invalid events",
            "Share of the events read that were rejected and sent to the dead-letter topic.",
            # no invalid series yet means none were rejected: 0, not "No data"
            f"(sum(rate(driftwire_events_invalid_total{{{inst}}}[{RATE}])) or vector(0))"
            f" / sum(rate(driftwire_events_consumed_total{{{inst}}}[{RATE}]))",
            unit="percentunit",
            steps=((None, "green"), (0.01, "orange"), (0.1, "red")),
        ),
        stat_panel(
            ids,
            "Consumer lag",
            "Records between the committed positions and the ends of the input partitions.",
            f"sum(driftwire_consumer_lag{{{inst}}})",
            steps=((None, "green"), (10_000, "orange"), (100_000, "red")),
        ),
        stat_panel(
            ids,
            "Alerts firing",
            "Drift alerts firing now, all kinds and severities (details on the alerts topic).",
            f"sum(driftwire_alerts_firing{{{inst}}})",
            steps=((None, "green"), (1, "red")),
        ),
        stat_panel(
            ids,
            "Workers up",
            "driftwire workers Prometheus scrapes successfully.",
            f'sum(up{{job="driftwire", {inst}}})',
            steps=((None, "red"), (1, "green")),
        ),
        stat_panel(
            ids,
            "Input partitions",
            "Input partitions assigned to the profile stage, all workers.",
            f"sum(driftwire_assigned_partitions{{{inst}}})",
            steps=((None, "orange"), (1, "green")),
        ),
    )

    board = board.with_row(ids.row("Input"))
    board = add(
        board,
        series_panel(
            ids,
            "Events consumed / s",
            "Inference events read per second, by input topic.",
            [
                query(
                    f"sum by (topic) (rate(driftwire_events_consumed_total{{{inst}}}[{RATE}]))",
                    "{{topic}}",
                )
            ],
        ),
        series_panel(
            ids,
            "Invalid events / s by reason",
            "Rejected events per second by reason (the __driftwire.errors.reason header).",
            [
                query(
                    f"sum by (reason) (rate(driftwire_events_invalid_total{{{inst}}}[{RATE}]))",
                    "{{reason}}",
                )
            ],
            stacked=True,
        ),
        series_panel(
            ids,
            "Late and future events / s by model",
            "Late: the event's bucket had closed (beyond the allowed lateness). Future: stamped "
            "too far ahead of the wall clock. Both are counted, not profiled.",
            [
                query(
                    f"sum by (model) (rate(driftwire_events_late_total{{{inst}}}[{RATE}]))",
                    "late {{model}}",
                ),
                query(
                    f"sum by (model) (rate(driftwire_events_future_total{{{inst}}}[{RATE}]))",
                    "future {{model}}",
                    "B",
                ),
            ],
        ),
        series_panel(
            ids,
            "Consumer lag by partition",
            "Records behind the end of each input partition (kafka_exporter's label names).",
            [
                query(
                    f"sum by (consumergroup, topic, partition) (driftwire_consumer_lag{{{inst}}})",
                    "{{topic}}/{{partition}} ({{consumergroup}})",
                )
            ],
        ),
        series_panel(
            ids,
            "Records produced / s",
            "Records the broker acknowledged: partials (stage 1 to stage 2), dead letters and "
            "alert events.",
            [
                query(
                    f"sum(rate(driftwire_partials_produced_total{{{inst}}}[{RATE}]))",
                    "partials",
                ),
                query(
                    f"sum(rate(driftwire_dead_letters_produced_total{{{inst}}}[{RATE}]))",
                    "dead letters",
                    "B",
                ),
                query(
                    f"sum(rate(driftwire_alerts_produced_total{{{inst}}}[{RATE}]))",
                    "alert events",
                    "C",
                ),
            ],
        ),
        series_panel(
            ids,
            "Batch processing time",
            "Time to decode, profile and dispatch one fetched batch: p50, p95, p99.",
            [
                query(
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(driftwire_batch_duration_seconds_bucket{{{inst}}}[{RATE}])))",
                    f"p{round(q * 100)}",
                    ref,
                )
                for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
            ],
            unit="s",
        ),
    )

    board = board.with_row(ids.row("Detection"))
    board = add(
        board,
        series_panel(
            ids,
            "Alerts firing by kind and severity",
            "Conditions whose alert is firing now, by kind and severity.",
            [
                query(
                    f"sum by (kind, severity) (driftwire_alerts_firing{{{inst}}})",
                    "{{kind}} {{severity}}",
                )
            ],
            stacked=True,
        ),
        series_panel(
            ids,
            "Alert events / s by kind and status",
            "Alert events produced to the alerts topic: firing and resolved transitions.",
            [
                query(
                    "sum by (kind, status) "
                    f"(rate(driftwire_alerts_produced_total{{{inst}}}[{RATE}]))",
                    "{{kind}} {{status}}",
                )
            ],
        ),
        series_panel(
            ids,
            "Window comparisons / s by result",
            "Feature x segment x statistic comparisons per second; insufficient_data means "
            "fewer events than detect.min_count in the window or its reference.",
            [
                query(
                    f"sum by (result) (rate(driftwire_windows_evaluated_total{{{inst}}}[{RATE}]))",
                    "{{result}}",
                )
            ],
            stacked=True,
        ),
        series_panel(
            ids,
            "Detect stage records / s by type",
            "Records read from the partials topic: partials, watermarks, malformed, failed.",
            [
                query(
                    f"sum by (type) (rate(driftwire_detect_records_total{{{inst}}}[{RATE}]))",
                    "{{type}}",
                )
            ],
        ),
    )

    board = board.with_row(ids.row("Health"))
    board = add(
        board,
        series_panel(
            ids,
            "Seconds since last progress",
            "Profile: since the last finished batch (grows while the input is idle). Detect: "
            "since the last partial or 1-second tick (should stay near 0).",
            [
                query(
                    "time() - max by (instance) "
                    f"(driftwire_last_progress_timestamp_seconds{{{inst}}})",
                    "profile {{instance}}",
                ),
                query(
                    "time() - max by (instance) "
                    f"(driftwire_detect_last_progress_timestamp_seconds{{{inst}}})",
                    "detect {{instance}}",
                    "B",
                ),
            ],
            unit="s",
        ),
        series_panel(
            ids,
            "Assigned partitions",
            "Input partitions of the profile stage and partials partitions (models) of the "
            "detect stage, by worker.",
            [
                query(
                    f"sum by (instance) (driftwire_assigned_partitions{{{inst}}})",
                    "profile {{instance}}",
                ),
                query(
                    f"sum by (instance) (driftwire_detect_assigned_partitions{{{inst}}})",
                    "detect {{instance}}",
                    "B",
                ),
            ],
        ),
        series_panel(
            ids,
            "Offset commits / s by result",
            "Commits of the profile stage; failures happen during rebalances.",
            [
                query(
                    f"sum by (result) (rate(driftwire_offset_commits_total{{{inst}}}[{RATE}]))",
                    "{{result}}",
                )
            ],
        ),
        series_panel(
            ids,
            "Rebalances",
            "Consumer-group rebalances of the profile stage, by phase.",
            [
                query(
                    f"sum by (phase) (increase(driftwire_rebalances_total{{{inst}}}[{RATE}]))",
                    "{{phase}}",
                )
            ],
        ),
        series_panel(
            ids,
            "Detect stage partitions with a stalled commit",
            "Partials partitions whose committed offset (the detect stage's group) has not "
            "moved for 5 minutes while records past it were read: nothing is lost, but a "
            "restart reads everything since again (rule DriftwireDetectCommitStalled).",
            [
                query(
                    f"sum by (instance) (driftwire_detect_commit_stalled_partitions{{{inst}}})",
                    "{{instance}}",
                )
            ],
        ),
    )

    # `driftwire bridge TARGET` processes: their own scrape job, not filtered by worker
    board = board.with_row(ids.row("Bridges"))
    board = add(
        board,
        series_panel(
            ids,
            "Alert deliveries / s by target and result",
            "Alert emissions the bridges sent to Alertmanager, PagerDuty, Slack or a webhook: "
            "delivered, rejected (a 4xx) or undeliverable (still failing after the retries; "
            "both go to the bridge's dead-letter topic), and records skipped as duplicates or "
            "routed out.",
            [
                query(
                    f"sum by (target, result) (rate(driftwire_bridge_deliveries_total[{RATE}]))",
                    "{{target}} {{result}}",
                ),
                query(
                    f"sum by (target, reason) (rate(driftwire_bridge_skipped_total[{RATE}]))",
                    "{{target}} skipped ({{reason}})",
                    "B",
                ),
            ],
        ),
        series_panel(
            ids,
            "Bridge HTTP requests / s by code",
            "Every HTTP attempt to the receivers by status class (error: timeout or refused "
            "connection), and the retries among them.",
            [
                query(
                    f"sum by (target, code) (rate(driftwire_bridge_requests_total[{RATE}]))",
                    "{{target}} {{code}}",
                ),
                query(
                    f"sum by (target) (rate(driftwire_bridge_retries_total[{RATE}]))",
                    "{{target}} retries",
                    "B",
                ),
            ],
        ),
        series_panel(
            ids,
            "Alert delivery time and age",
            "p50 / p99 time to deliver one alert (retries included), and p99 age of an alert "
            "when its receiver accepted it (from its evaluation: detector to on-call).",
            [
                *(
                    query(
                        f"histogram_quantile({q}, sum by (target, le) "
                        f"(rate(driftwire_bridge_delivery_seconds_bucket[{RATE}])))",
                        f"{{{{target}}}} delivery p{round(q * 100)}",
                        ref,
                    )
                    for q, ref in ((0.5, "A"), (0.99, "B"))
                ),
                query(
                    "histogram_quantile(0.99, sum by (target, le) "
                    f"(rate(driftwire_bridge_alert_age_seconds_bucket[{RATE}])))",
                    "{{target}} age p99",
                    "C",
                ),
            ],
            unit="s",
        ),
        series_panel(
            ids,
            "Alerts waiting in the bridges",
            "Records of the alerts topic each bridge has not handled yet (its consumer lag). "
            "Growing while deliveries fail: the receiver is down and the bridge retries.",
            [
                query(
                    "sum by (target) (driftwire_bridge_consumer_lag)",
                    "{{target}}",
                )
            ],
        ),
    )
    return board


# -- model ---------------------------------------------------------------------------------


def model_view() -> dash.Dashboard:
    ids = Layout()
    sel = CONDITION_SELECTOR
    board = (
        base(
            "driftwire-model",
            "driftwire model",
            "Drift of one model: scores per feature and segment against their thresholds.",
        )
        .with_variable(
            query_variable("model", "Model", "label_values(driftwire_drift_score, model)")
        )
        .with_variable(
            query_variable(
                "version",
                "Version",
                'label_values(driftwire_drift_score{model=~"$model"}, model_version)',
            )
        )
        .with_variable(
            query_variable(
                "segment",
                "Segment",
                "label_values(driftwire_drift_score"
                '{model=~"$model", model_version=~"$version"}, segment)',
            )
        )
        .with_variable(
            query_variable(
                "feature",
                "Feature",
                f"label_values(driftwire_drift_score{{{MODEL_SELECTOR}}}, feature)",
            )
        )
    )
    ratio = (
        f"driftwire_drift_score{{{sel}}} / on ({CONDITION}) "
        f'driftwire_drift_threshold{{{sel}, severity="critical"}}'
    )

    board = board.with_row(ids.row("Drift"))
    board = add(
        board,
        stat_panel(
            ids,
            "Conditions drifting",
            "Feature x segment x statistic conditions whose drift alert is firing.",
            f"sum(driftwire_drift_detected{{{sel}}})",
            steps=((None, "green"), (1, "red")),
            width=8,
        ),
        stat_panel(
            ids,
            "Conditions monitored",
            "Feature x segment x statistic conditions with a score.",
            f"count(driftwire_drift_score{{{sel}}})",
            width=8,
        ),
        stat_panel(
            ids,
            "Worst score / critical threshold",
            "The highest drift score as a share of its critical threshold (100% = at the "
            "threshold).",
            f"max({ratio})",
            unit="percentunit",
            steps=((None, "green"), (0.5, "orange"), (1, "red")),
            width=8,
        ),
    )

    threshold_style = [
        DynamicConfigValue(id_val="custom.lineStyle", value=LineStyle(fill="dash", dash=[10, 10])),
        DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        DynamicConfigValue(id_val="custom.lineWidth", value=2),
    ]
    scores = series_panel(
        ids,
        "Drift score by feature and segment",
        "The latest drift statistic of every feature and segment (one point per evaluated "
        "window), with the warning and critical thresholds it is held against (dashed).",
        [
            query(
                f"max by (feature, segment, statistic) (driftwire_drift_score{{{sel}}})",
                "{{feature}} · {{segment}} ({{statistic}})",
            ),
            query(
                f"max by (statistic, severity) (driftwire_drift_threshold{{{sel}}})",
                "{{severity}} threshold ({{statistic}})",
                "B",
            ),
        ],
        width=24,
        height=10,
    ).override_by_query("B", threshold_style)
    board = board.with_panel(scores)

    relative = (
        series_panel(
            ids,
            "Score relative to its critical threshold",
            "Score / critical threshold per feature and segment: above 100% the condition "
            "breaches (an alert fires after detect.consecutive_windows breaching windows).",
            [
                query(
                    f"max by (feature, segment, statistic) ({ratio})",
                    "{{feature}} · {{segment}} ({{statistic}})",
                )
            ],
            unit="percentunit",
        )
        .thresholds(thresholds((None, "green"), (1, "red")))
        .thresholds_style(GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.LINE))
    )
    board = board.with_panel(relative)

    detected = (
        statetimeline.Panel()
        .id(ids.id())
        .title("Drift detected")
        .description("1 while the drift alert of a feature and segment is firing.")
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"max by (feature, segment) (driftwire_drift_detected{{{sel}}})",
                "{{feature}} · {{segment}}",
            )
        )
        .mappings(
            [
                ValueMap(
                    options={
                        "0": ValueMappingResult(text="ok", color="green", index=0),
                        "1": ValueMappingResult(text="drift", color="red", index=1),
                    }
                )
            ]
        )
        .thresholds(thresholds((None, "green"), (1, "red")))
        .height(8)
        .span(12)
    )
    board = board.with_panel(detected)

    latest = (
        table.Panel()
        .id(ids.id())
        .title("Latest scores")
        .description("Every condition's latest score with its warning and critical thresholds.")
        .datasource(DATASOURCE)
        .targets(
            [
                instant(f"max by ({CONDITION}) (driftwire_drift_score{{{sel}}})", "A"),
                instant(
                    f"max by ({CONDITION}) "
                    f'(driftwire_drift_threshold{{{sel}, severity="warning"}})',
                    "B",
                ),
                instant(
                    f"max by ({CONDITION}) "
                    f'(driftwire_drift_threshold{{{sel}, severity="critical"}})',
                    "C",
                ),
            ]
        )
        .with_transformation(DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        "Value #A": "score",
                        "Value #B": "warning",
                        "Value #C": "critical",
                        "model_version": "version",
                    },
                },
            )
        )
        .sort_by([])
        .height(10)
        .span(24)
    )
    board = board.with_panel(latest)

    board = board.with_row(ids.row("Latency"))
    board = add(
        board,
        series_panel(
            ids,
            "Serving latency percentiles",
            "The model's latency_ms percentiles (p50, p95, p99) over the latest evaluated "
            "window, per version and segment. Spikes against the reference, SLO breaches and "
            "slow creep are alerted as latency_anomaly alerts.",
            [query(f"driftwire_latency_seconds{{{MODEL_SELECTOR}}}")],
            unit="s",
            width=24,
        ),
    )

    board = board.with_row(ids.row("Input of this model"))
    board = add(
        board,
        series_panel(
            ids,
            "Window comparisons / s by result (all models)",
            "Comparisons per second; insufficient_data means too few events in a window or "
            "its reference for the statistic to be trusted.",
            [
                query(
                    f"sum by (result) (rate(driftwire_windows_evaluated_total[{RATE}]))",
                    "{{result}}",
                )
            ],
            stacked=True,
        ),
        series_panel(
            ids,
            "Late and future events / s",
            "Events of the model that arrived after their bucket closed, or stamped too far in "
            "the future: counted, not profiled.",
            [
                query(
                    "sum by (model) "
                    f'(rate(driftwire_events_late_total{{model=~"$model"}}[{RATE}]))',
                    "late {{model}}",
                ),
                query(
                    "sum by (model) "
                    f'(rate(driftwire_events_future_total{{model=~"$model"}}[{RATE}]))',
                    "future {{model}}",
                    "B",
                ),
            ],
        ),
    )
    return board


# -- model performance ---------------------------------------------------------------------


def performance_view() -> dash.Dashboard:
    """Realized and estimated performance of one model from the truth stage."""
    ids = Layout()
    sel = MODEL_SELECTOR
    series = "model_version, segment"
    judged = f'{sel}, age=~"$age"'  # the realized side: one series per judgement age
    board = (
        base(
            "driftwire-performance",
            "driftwire model performance",
            "Is the model still right? Realized performance per window from joined ground "
            "truth (with its label completeness), the estimate before labels, label drift "
            "and the join's accounting.",
        )
        .with_variable(
            query_variable(
                "model", "Model", "label_values(driftwire_label_completeness_ratio, model)"
            )
        )
        .with_variable(
            query_variable(
                "version",
                "Version",
                'label_values(driftwire_label_completeness_ratio{model=~"$model"}, model_version)',
            )
        )
        .with_variable(
            query_variable(
                "segment",
                "Segment",
                "label_values(driftwire_label_completeness_ratio"
                '{model=~"$model", model_version=~"$version"}, segment)',
            )
        )
        .with_variable(
            query_variable(
                "age",
                "Judged after",
                'label_values(driftwire_label_completeness_ratio{model=~"$model"}, age)',
            )
        )
    )

    board = board.with_row(ids.row("Realized performance"))
    board = add(
        board,
        series_panel(
            ids,
            "Realized performance per window",
            "Each metric of the window (by prediction time) judged at each age: the first "
            "judgement truth.evaluation_delay_seconds after it closed, then again at "
            "truth.rejudge_after_seconds and the horizon, each on every label joined by then, "
            "with its 95% interval (dashed). The older the age, the more complete the labels.",
            [
                query(
                    f"max by (metric, age, {series}) (driftwire_performance{{{judged}}})",
                    "{{metric}} · {{age}} · {{model_version}} · {{segment}}",
                ),
                query(
                    f"max by (metric, bound, age, {series}) "
                    f"(driftwire_performance_bound{{{judged}}})",
                    "{{metric}} {{bound}} · {{age}} · {{model_version}} · {{segment}}",
                    "B",
                ),
            ],
            width=24,
            height=10,
        ).override_by_query(
            "B",
            [
                DynamicConfigValue(
                    id_val="custom.lineStyle", value=LineStyle(fill="dash", dash=[4, 6])
                ),
                DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            ],
        ),
        series_panel(
            ids,
            "Label completeness",
            "Share of the window's predictions whose label had arrived when it was judged, per "
            "judgement age: a value read off a low completeness is less certain (its interval "
            "says how much).",
            [
                query(
                    f"max by (age, {series}) (driftwire_label_completeness_ratio{{{judged}}})",
                    "{{age}} · {{model_version}} · {{segment}}",
                )
            ],
            unit="percentunit",
        ),
        series_panel(
            ids,
            "Labelled predictions per window",
            "Joined predictions behind the realized values (below truth.min_count a window is "
            "not judged).",
            [
                query(
                    f"max by (age, {series}) "
                    f"(driftwire_performance_labelled_predictions{{{judged}}})",
                    "{{age}} · {{model_version}} · {{segment}}",
                )
            ],
        ),
    )

    board = board.with_row(ids.row("Estimated before labels"))
    board = add(
        board,
        series_panel(
            ids,
            "Estimated vs realized accuracy",
            "The estimate of the window that just closed, from its scores alone (binary "
            "classifiers; calibration fitted on the reference), beside the realized accuracy "
            "of the window judged on its labels. An estimate cannot see concept drift.",
            [
                query(
                    f"max by ({series}) (driftwire_performance_estimated{{{sel}, "
                    'metric="accuracy"})',
                    "estimated · {{model_version}} · {{segment}}",
                ),
                query(
                    f"max by (age, {series}) "
                    f'(driftwire_performance{{{judged}, metric="accuracy"}})',
                    "realized · {{age}} · {{model_version}} · {{segment}}",
                    "B",
                ),
            ],
        ),
        series_panel(
            ids,
            "Estimate error (estimated - realized)",
            "For the window judged at each age: the estimate made when it closed minus the "
            "realized value, per metric. Far from 0 means the scores no longer mean what they "
            "meant on the reference (or concept drift).",
            [
                query(
                    f"max by (metric, age, {series}) "
                    f"(driftwire_performance_estimate_error{{{judged}}})",
                    "{{metric}} · {{age}} · {{model_version}} · {{segment}}",
                )
            ],
        ).min(-1),
    )

    board = board.with_row(ids.row("Labels"))
    board = add(
        board,
        series_panel(
            ids,
            "Actual label distribution",
            "Share of each actual class among the judged window's labels (per judgement age); "
            "a label_drift alert fires when it moves from the reference's significantly and "
            "by more than the margin.",
            [
                query(
                    f"max by (label, age, {series}) (driftwire_actual_label_share{{{judged}}})",
                    "{{label}} · {{age}} · {{model_version}} · {{segment}}",
                )
            ],
            unit="percentunit",
            stacked=True,
        ),
        series_panel(
            ids,
            "Performance alerts / s by kind (all models)",
            "performance_degradation, label_drift and estimated_performance alert events "
            "produced by the truth stage.",
            [
                query(
                    f"sum by (kind, status) (rate(driftwire_truth_alerts_produced_total[{RATE}]))",
                    "{{kind}} {{status}}",
                )
            ],
        ),
    )

    board = board.with_row(ids.row("Join accounting (all models)"))
    outcomes = (
        'outcome=~"joined|orphan_labels|late_labels|expired|duplicate_labels|'
        'duplicate_predictions|mismatched_labels|evicted_predictions|evicted_labels"'
    )
    board = add(
        board,
        series_panel(
            ids,
            "Join outcomes / s",
            "joined: a label met its prediction; orphan_labels: no prediction for it; "
            "late_labels: later than truth.horizon_seconds; expired: predictions never "
            "labelled within the horizon; duplicates, mismatches and evictions (over "
            "truth.max_pending).",
            [
                query(
                    f"sum by (outcome) (rate(driftwire_truth_records_total{{{outcomes}}}[{RATE}]))",
                    "{{outcome}}",
                )
            ],
            stacked=True,
        ),
        series_panel(
            ids,
            "Pending in the join",
            "Predictions waiting for their label and labels waiting for their prediction "
            "(bounded by truth.max_pending; truth.sample_fraction keeps a known share).",
            [query("sum by (side) (driftwire_truth_pending)", "{{side}}")],
        ),
    )
    return board


# -- output --------------------------------------------------------------------------------

DASHBOARDS = {
    "driftwire-overview.json": overview,
    "driftwire-model.json": model_view,
    "driftwire-performance.json": performance_view,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard (stable: sorted keys, trailing newline)."""
    out = {}
    for name, make in DASHBOARDS.items():
        doc = json.loads(json.dumps(make().build(), cls=JSONEncoder))
        out[name] = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"default: {OUT_DIR.name}/")
    parser.add_argument(
        "--check", action="store_true", help="compare with the files in --out, write nothing"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run: python dashboards/build.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
