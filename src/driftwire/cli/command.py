"""The ``driftwire`` command line. It parses arguments and calls; the work is elsewhere."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from types import TracebackType

from driftwire import __version__
from driftwire._secrets import redact
from driftwire.errors import ConfigError, DriftwireError

DESCRIPTION = """\
driftwire: streaming drift detection for machine-learning models in production.

Model servers publish one JSON event per prediction to Kafka. driftwire profiles them in
event-time windows per model version, feature and segment, compares every window with a
reference, and publishes drift, data-quality and latency alerts to an alerts topic.

quick start:
  make demo     a generated stream with a known drift, alerts printed
  make test     every test, against a real Kafka broker the tests start themselves
"""

EPILOG = """\
commands:
  worker     run the stages against Kafka:    driftwire worker --config driftwire.yaml
  demo       in-memory demo with a drift:     driftwire demo
  replay     a file of events, in memory:     driftwire replay events.jsonl --baseline b.dwb
             or a past range of a topic:      driftwire replay --topic T --since 2026-01-01T00:00Z
  baseline   build a reference profile:       driftwire baseline build train.parquet ...
  report     an HTML drift report:            driftwire report --events e.jsonl --baseline b.dwb
  bridge     forward alerts to a receiver:    driftwire bridge pagerduty --config driftwire.yaml
  config     validate a settings file:        driftwire config check driftwire.yaml
  status     what a running worker sees:      driftwire status --url http://localhost:9464

configuration: a YAML file (--config) plus DRIFTWIRE_<SECTION>_<KEY> environment variables,
e.g. DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS=broker:9092. See docs/configuration.md for every key.
"""


def _topic_range(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--topic",
        help=f"read {what} from this topic instead of a file (kafka settings from --config / "
        "env; a fresh consumer, nothing committed)",
    )
    parser.add_argument(
        "--since", help="with --topic: records from this time (RFC 3339 or epoch ms)"
    )
    parser.add_argument(
        "--until", help="with --topic: records before this time (default: the end now)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftwire",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"driftwire {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    worker = sub.add_parser("worker", help="run the profile and detect stages against Kafka")
    worker.add_argument("--config", "-c", help="YAML settings file (env overrides apply)")
    worker.add_argument(
        "--stage",
        choices=("all", "profile", "detect", "truth"),
        default="all",
        help="run every stage (default; the ground-truth stage only with truth.enabled) or "
        "one of them, to scale them apart",
    )
    worker.add_argument(
        "--reload-poll-seconds",
        type=float,
        default=2.0,
        metavar="S",
        help="how often the config file is checked for changes to reload (SIGHUP reloads at "
        "once); 0: on SIGHUP only",
    )

    demo = sub.add_parser("demo", help="in-memory demo: a generated stream with a known drift")
    demo.add_argument("--events", type=int, default=200_000, help="events to generate")
    demo.add_argument("--seed", type=int, default=7)

    replay = sub.add_parser(
        "replay",
        help="run inference events (a file, or a past range of a topic) through both stages "
        "in memory",
    )
    replay.add_argument("file", nargs="?", help="events as JSON Lines (one event per line)")
    _topic_range(replay, "a backfill")
    replay.add_argument("--config", "-c", help="YAML settings file (env overrides apply)")
    replay.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="FILE",
        help="baseline file from 'driftwire baseline build' (repeatable)",
    )
    replay.add_argument("--out", "-o", help="write alerts as JSON Lines here (default stdout)")

    baseline = sub.add_parser("baseline", help="reference profiles from training data")
    bsub = baseline.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    build = bsub.add_parser(
        "build", help="profile a CSV / JSON Lines / Parquet table, or logged inference events"
    )
    build.add_argument(
        "file",
        nargs="?",
        help="training or validation data (.csv, .jsonl, .parquet), or inference events "
        "as JSON Lines (found by their shape)",
    )
    _topic_range(build, "logged events")
    build.add_argument(
        "--format",
        choices=("auto", "table", "events"),
        default="auto",
        help="events: JSON Lines of inference events (their features, prediction, latency "
        "and segments are profiled); table: one column per feature; auto (default): events "
        "when the first line is one",
    )
    build.add_argument("--model", help="model name (events: picks one when the file has several)")
    build.add_argument("--model-version", help="model version (events: as --model)")
    build.add_argument("--features", help="comma-separated feature columns (default: the rest)")
    build.add_argument("--prediction-column", help="numeric prediction score column")
    build.add_argument("--label-column", help="predicted label column")
    build.add_argument("--latency-column", help="latency in milliseconds column")
    build.add_argument(
        "--target-column",
        help="the truth (actual outcome) column: the model's realized performance on the file "
        "(from --prediction-column and/or --label-column) is stored in the baseline, and the "
        "truth stage judges against it",
    )
    build.add_argument(
        "--target-classes",
        action="store_true",
        help='read a numeric --target-column as class labels (1 -> "1"); default: numbers '
        "are regression targets, text and booleans classes, as on the labels topic",
    )
    build.add_argument("--segment-columns", default="", help="comma-separated segment columns")
    build.add_argument("--output", "-o", required=True, help="baseline file to write")
    build.add_argument(
        "--publish",
        action="store_true",
        help="also publish it to the baselines topic (kafka settings from --config / env)",
    )
    build.add_argument(
        "--config",
        "-c",
        help="YAML settings file: detect.min_reference_count (too small profiles are warned "
        "about) and kafka for --publish",
    )

    report = sub.add_parser(
        "report",
        help="one HTML drift report per model version: a file of events or a topic range vs "
        "a baseline, or a running worker's last window (--url)",
    )
    report.add_argument("--events", help="inference events as JSON Lines")
    report.add_argument(
        "--url",
        help="a running worker's HTTP address (http.port): its report of --model's last "
        "window (GET /report), alerts firing now",
    )
    report.add_argument("--model-version", help="with --url: this version (default: the latest)")
    _topic_range(report, "the events")
    report.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="FILE",
        help="baseline file from 'driftwire baseline build' (repeatable; without one the "
        "first window of each version is its reference)",
    )
    report.add_argument(
        "--out", "-o", default="report.html", help="the page (several versions: NAME-model-version)"
    )
    report.add_argument(
        "--at",
        help="show the window that ends first after this time (RFC 3339 or epoch ms; "
        "default: the last window)",
    )
    report.add_argument("--model", help="only this model")
    report.add_argument("--config", "-c", help="YAML settings file (env overrides apply)")

    config = sub.add_parser("config", help="check a settings file")
    csub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = csub.add_parser(
        "check", help="validate a settings file; print the effective settings, secrets masked"
    )
    check.add_argument("file", nargs="?", help="YAML settings file (default: none)")

    bridge = sub.add_parser(
        "bridge", help="forward the alerts topic to Alertmanager, PagerDuty, Slack or a webhook"
    )
    bridge.add_argument("target", choices=("alertmanager", "pagerduty", "slack", "webhook"))
    bridge.add_argument("--config", "-c", help="YAML settings file (env overrides apply)")

    status = sub.add_parser(
        "status", help="what a running worker thinks of every model (its /api/v1/status)"
    )
    status.add_argument(
        "--url", default="http://localhost:9464", help="the worker's HTTP address (http.port)"
    )
    status.add_argument("--model", help="only this model")
    status.add_argument(
        "--state",
        help="only these states, comma-separated (firing, breaching, insufficient_data, ok)",
    )
    status.add_argument("--all", action="store_true", help="list ok conditions too")
    status.add_argument("--json", action="store_true", help="print the status document (JSON)")
    status.add_argument("--cafile", help="PEM CA of an https worker's certificate")
    status.add_argument("--user", help="basic-auth user of the worker's http.web_config_file")
    status.add_argument("--password-file", help="file holding that user's password")
    return parser


def _redacting_excepthook() -> None:
    """An unexpected crash still prints its traceback, with every known secret masked."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        text = "".join(traceback.format_exception(kind, exc, tb))
        sys.stderr.write(redact(text))

    sys.excepthook = hook


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _redacting_excepthook()
    try:
        if args.command == "worker":
            from driftwire.cli.worker import run_worker

            return run_worker(args.config, stage=args.stage, reload_poll_s=args.reload_poll_seconds)
        if args.command == "demo":
            from driftwire.cli.demo import run_demo

            return run_demo(events=args.events, seed=args.seed)
        if args.command == "replay":
            from driftwire.cli.replay import run_replay

            return run_replay(
                args.file,
                config=args.config,
                baselines=args.baseline,
                out=args.out,
                topic=args.topic,
                since=args.since,
                until=args.until,
            )
        if args.command == "report":
            from driftwire.cli.report import fetch_report, run_report
            from driftwire.cli.sources import event_source

            if args.url is not None:
                return fetch_report(args.url, args.model, args.model_version, args.out)

            return run_report(
                event_source(args.events, args.topic, args.since, args.until),
                baselines=args.baseline,
                out=args.out,
                config=args.config,
                at=args.at,
                model=args.model,
            )
        if args.command == "bridge":
            from driftwire.bridges import run_bridge

            return run_bridge(args.target, args.config)
        if args.command == "config":
            from driftwire.cli.config_check import run_config_check

            return run_config_check(args.file)
        if args.command == "status":
            from driftwire.cli.status import Access, run_status

            return run_status(
                args.url,
                model=args.model,
                states=args.state,
                as_json=args.json,
                show_ok=args.all,
                access=Access.from_options(args.cafile, args.user, args.password_file),
            )
        if args.command == "baseline":
            from driftwire.cli.baseline import run_baseline_build

            return run_baseline_build(args)
    except ConfigError as exc:
        print(f"driftwire: {redact(str(exc))}", file=sys.stderr)
        return 2
    except DriftwireError as exc:
        print(f"driftwire: {redact(str(exc))}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
