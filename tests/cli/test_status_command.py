"""``driftwire status``: the table of a worker's status, and fetching it over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry
from scenarios import MINUTE, SEGMENT, START, pipeline, small
from tls_certs import CertificateAuthority

from driftwire.cli.command import main
from driftwire.cli.status import fetch_status, render_status
from driftwire.detect.detector import Detector
from driftwire.detect.status import (
    MAX_LIMIT,
    ConditionStatus,
    ModelStatus,
    StatusQuery,
    build_status,
)
from driftwire.errors import DriftwireError
from driftwire.offline.generator import Change, generate
from driftwire.ops.health import HealthServer, Readiness
from driftwire.ops.web_config import WebConfig, load_web_config
from driftwire.stages.detect.status_api import StatusApi

URL = "http://localhost:9464"


class DetectorSource:
    """A real detector behind the status routes (as the detect stage holds them)."""

    def __init__(self, detector: Detector) -> None:
        self.detectors = {0: detector}
        self._detector = detector

    def status_records(self) -> tuple[list[ModelStatus], list[ConditionStatus]]:
        return self._detector.status_records()


@pytest.fixture(scope="module")
def detector() -> Detector:
    """A stream whose income shifts in one segment from minute 20; min_count high enough
    that the segments (about 670 events a window) lack data and all traffic has enough."""
    p = pipeline(min_count=1000)
    spec = small(12_000, 45, Change("income", START + 20 * MINUTE, 2.0, SEGMENT))
    list(p.run(generate(spec)))
    return p.detector


def document(detector: Detector, **query: Any) -> dict[str, Any]:
    models, conditions = detector.status_records()
    doc = build_status(
        models,
        conditions,
        StatusQuery(limit=MAX_LIMIT, **query),
        now_ms=START + 60 * MINUTE,
        worker={"stage": "all", "partitions": [0]},
    )
    return dict(orjson.loads(orjson.dumps(doc)))


def test_the_table_fits_80_columns_and_lists_firing_first(detector: Detector) -> None:
    doc = document(detector)
    text = render_status(doc, url=URL)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    assert lines[0] == f"driftwire status of {URL} (partitions 0)"
    counts = doc["counts"]
    assert lines[1] == (
        f"{counts['firing']} firing, {counts['breaching']} breaching, "
        f"{counts['insufficient_data']} insufficient data, {counts['ok']} ok"
    )
    assert counts["firing"] >= 1
    assert "churn 1.4.2: 2 segments, evaluated until 01-01 00:44" in lines
    rows = lines[lines.index(next(x for x in lines if x.startswith("STATE"))) + 1 :]
    firing = [r for r in rows if r.startswith("FIRING")]
    assert len(firing) == counts["firing"]
    assert rows[: len(firing)] == firing  # firing first
    assert all(" income " in r and "crit" in r for r in firing)
    assert not [r for r in rows if r.startswith("ok ")]  # ok only counted


def test_all_lists_ok_conditions_and_insufficient_data_is_summarised(detector: Detector) -> None:
    doc = document(detector)
    text = render_status(doc, url=URL, show_ok=True)
    rows = text.splitlines()
    assert len([r for r in rows if r.startswith("ok ")]) == doc["counts"]["ok"]
    assert max(map(len, rows)) <= 80
    insufficient = [c for c in doc["conditions"] if c["state"] == "insufficient_data"]
    assert insufficient, "the scenario has checks without enough data"
    summary = rows[rows.index("Insufficient data:") + 1 :]
    counted = [line for line in summary if re.match(r"^ +\d+ x ", line)]
    assert sum(int(line.split(" x ")[0]) for line in counted) == len(insufficient)


def test_long_reasons_wrap_within_80_columns() -> None:
    reason = "too few latencies above the percentile in the window or its reference " * 2
    doc = {
        "counts": {"firing": 0, "breaching": 0, "insufficient_data": 3, "ok": 0},
        "models": [],
        "worker": {},
        "conditions": [
            {
                "model": "m",
                "model_version": "1",
                "state": "insufficient_data",
                "reason": reason.strip(),
            }
        ]
        * 3,
    }
    lines = render_status(doc, url=URL).splitlines()
    tail = lines[lines.index("Insufficient data:") + 1 :]
    assert len(tail) == 2 and tail[0].startswith("     3 x too few latencies")
    assert max(map(len, lines)) <= 80
    assert " ".join(x.strip() for x in tail) == "3 x " + reason.strip()


def test_a_held_back_alert_is_marked() -> None:
    silence = {"matchers": ['feature="income"', 'segment!="all"']}
    p = pipeline(alerts={"silences": [silence]})
    list(p.run(generate(small(12_000, 45, Change("income", START + 20 * MINUTE, 2.0, SEGMENT)))))
    text = render_status(document(p.detector), url=URL)
    starred = [r for r in text.splitlines() if r.startswith("FIRING*")]
    assert len(starred) == 1 and SEGMENT in starred[0]
    assert "* held back: by a silence" in text


@contextlib.contextmanager
def serving(detector: Detector, web_config: WebConfig | None = None) -> Iterator[str]:
    """The status routes of a real HTTP server on a thread's event loop."""
    loop = asyncio.new_event_loop()
    api = StatusApi(lambda: DetectorSource(detector), worker=lambda: {"stage": "all"})
    server = HealthServer(CollectorRegistry(), Readiness(), api.routes(), web_config=web_config)
    loop.run_until_complete(server.start("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"{server.scheme}://localhost:{server.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def served(detector: Detector) -> Iterator[str]:
    with serving(detector) as url:
        yield url


def test_fetching_follows_the_pages(served: str, detector: Detector) -> None:
    whole = fetch_status(served)
    paged = fetch_status(served, page_size=7)
    assert [c["id"] for c in paged["conditions"]] == [c["id"] for c in whole["conditions"]]
    assert len(whole["conditions"]) > 7 and paged["next_cursor"] is None
    firing = fetch_status(served, model="churn", states="firing")
    assert len(firing["conditions"]) == whole["counts"]["firing"]


def test_the_command_prints_the_table_or_json(
    served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--url", served]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"driftwire status of {served}") and "FIRING" in out
    assert main(["status", "--url", served, "--json", "--model", "churn"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["filters"]["model"] == "churn"


def test_an_unreachable_worker_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    assert main(["status", "--url", f"http://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"driftwire: cannot reach a worker at http://127.0.0.1:{port}")


def test_a_bad_query_is_the_workers_one_line(served: str) -> None:
    with pytest.raises(DriftwireError, match=r"answered 400: state='x' is not a state"):
        fetch_status(served, states="x")


def test_asking_for_insufficient_data_shows_the_reasons_alone(detector: Detector) -> None:
    doc = document(detector, states=("insufficient_data",))
    text = render_status(doc, url=URL, show_ok=True)
    assert "No conditions." not in text and "Nothing fires" not in text
    assert "Insufficient data:" in text and "STATE" not in text


def test_a_protected_worker_is_asked_over_https_with_a_user(
    detector: Detector, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = CertificateAuthority.create(tmp_path / "pki", "status-ca")
    cert = ca.issue("worker", hosts=("localhost",))
    hashed = bcrypt.hashpw(b"pw-status-1", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(cert.cert), "key_file": str(cert.key)},
                "basic_auth_users": {"ops": hashed},
            }
        )
    )
    (tmp_path / "pw").write_text("pw-status-1\n")
    (tmp_path / "bad").write_text("pw-status-2\n")
    with serving(detector, load_web_config(str(web))) as url:
        assert url.startswith("https://")
        flags = ["--url", url, "--cafile", str(ca.cert)]
        ok = ["--user", "ops", "--password-file", str(tmp_path / "pw")]
        assert main(["status", *flags, *ok, "--json"]) == 0
        assert orjson.loads(capsys.readouterr().out)["counts"]["firing"] > 0
        assert main(["status", *flags]) == 1
        assert capsys.readouterr().err.splitlines() == [
            f"driftwire: {url} answered 401: it wants a user (its http.web_config_file): "
            "give --user and --password-file"
        ]
        bad = ["--user", "ops", "--password-file", str(tmp_path / "bad")]
        assert main(["status", *flags, *bad]) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "its user or password is wrong" in err[0]
        assert main(["status", "--url", url, *ok]) == 1  # the worker's CA not given
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "CERTIFICATE_VERIFY_FAILED" in err[0], err
        assert main(["status", *flags, "--password-file", str(tmp_path / "pw")]) == 1
        assert capsys.readouterr().err.strip() == "driftwire: --password-file needs --user"
