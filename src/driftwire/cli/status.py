"""``driftwire status``: what a running worker thinks of every model, as a table.

It reads the worker's ``/api/v1/status`` (following its pages) and prints the models with
their reference and last window, then the conditions that need attention, firing first, in
80 columns; ``ok`` conditions are counted (``--all`` lists them too). Insufficient data is
summarised by reason. ``--json`` prints the document instead (all pages merged). A worker with
an ``http.web_config_file`` is asked over HTTPS (``--cafile``: the CA of its certificate) with a
basic-auth user (``--user``, the password from ``--password-file``).

>>> doc = {"counts": {"firing": 0, "breaching": 0, "insufficient_data": 0, "ok": 3},
...        "models": [], "conditions": [], "worker": {}}
>>> print(render_status(doc, url="http://w:9464"))
driftwire status of http://w:9464
0 firing, 0 breaching, 0 insufficient data, 3 ok
<BLANKLINE>
Nothing fires or breaches.
"""

from __future__ import annotations

import json
import ssl
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from driftwire.errors import DriftwireError

__all__ = ["Access", "fetch_status", "render_status", "run_status"]

DEFAULT_URL = "http://localhost:9464"
MAX_PAGES = 50  # x 1000 conditions: more than any worker at the cardinality caps holds
WIDTH = 80
_STATE_TEXT = {
    "firing": "FIRING",
    "breaching": "breaching",
    "insufficient_data": "no data",
    "ok": "ok",
}


class Access:
    """How to reach a protected worker: the CA of its certificate, a basic-auth user."""

    def __init__(
        self, cafile: str | None = None, user: str | None = None, password: str | None = None
    ) -> None:
        self.headers: dict[str, str] = {}
        if user is not None:
            from driftwire.ops.basic_auth import basic_header

            self.headers["Authorization"] = basic_header(user, password or "")
        self.context: ssl.SSLContext | None = None
        if cafile is not None:
            try:
                self.context = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
                raise DriftwireError(f"--cafile {cafile} cannot be used: {why}") from None

    @classmethod
    def from_options(
        cls, cafile: str | None, user: str | None, password_file: str | None
    ) -> Access:
        password = None
        if password_file is not None:
            try:
                password = Path(password_file).read_text().strip()
            except OSError as exc:
                why = exc.strerror
                raise DriftwireError(
                    f"cannot read --password-file {password_file}: {why}"
                ) from None
        if password is not None and user is None:
            raise DriftwireError("--password-file needs --user")
        return cls(cafile, user, password)


def fetch_status(
    url: str,
    *,
    model: str | None = None,
    states: str | None = None,
    timeout_s: float = 10.0,
    page_size: int = 1000,
    access: Access | None = None,
) -> dict[str, Any]:
    """The worker's status document, every page of it merged (conditions concatenated)."""
    access = access or Access()
    base = url.rstrip("/") + "/api/v1/status"
    params: dict[str, str] = {"limit": str(page_size)}
    if model:
        params["model"] = model
    if states:
        params["state"] = states
    doc = page = _get(f"{base}?{urllib.parse.urlencode(params)}", url, timeout_s, access)
    for _ in range(MAX_PAGES - 1):
        cursor = page.get("next_cursor")
        if not cursor:
            break
        params["cursor"] = cursor
        page = _get(f"{base}?{urllib.parse.urlencode(params)}", url, timeout_s, access)
        doc["conditions"] += page["conditions"]
        known = {m["model"] for m in doc["models"]}
        doc["models"] += [m for m in page["models"] if m["model"] not in known]
    doc["next_cursor"] = page.get("next_cursor")  # set only past MAX_PAGES pages
    return doc


def _get(address: str, url: str, timeout_s: float, access: Access) -> dict[str, Any]:
    request = urllib.request.Request(address, headers=access.headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=access.context) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            wrong = "its user or password is wrong" if access.headers else "it wants a user"
            raise DriftwireError(
                f"{url} answered 401: {wrong} (its http.web_config_file): "
                "give --user and --password-file"
            ) from None
        try:
            why = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            why = exc.reason
        raise DriftwireError(f"{url} answered {exc.code}: {why}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise unreachable(url, exc) from None
    except ValueError:
        raise DriftwireError(f"{url} did not answer JSON: is it a driftwire worker?") from None


def _short_time(iso: str | None) -> str:
    """``2026-01-01T00:40:00.000Z`` -> ``01-01 00:40``."""
    if not iso:
        return "-"
    return f"{iso[5:10]} {iso[11:16]}"


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x == int(x) and abs(x) < 1e6:
        return f"{int(x)}"
    return f"{x:.3g}"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _condition_name(c: dict[str, Any], one_model: bool) -> str:
    what = c["feature"] or c["kind"]
    parts = [] if one_model else [f"{c['model']} {c['model_version']}"]
    parts += [c["segment"], f"{what} {c['statistic']}".strip()]
    return " ".join(p for p in parts if p)


def _models(doc: dict[str, Any], width: int) -> list[str]:
    lines: list[str] = []
    for m in doc["models"]:
        for v in m["versions"]:
            segments = len(v["segments"])
            lines.append(
                _fit(
                    f"{m['model']} {v['version']}: {segments} segment{'s' * (segments != 1)}, "
                    f"evaluated until {_short_time(m['evaluated_until'])}",
                    width,
                )
            )
            ref = v["reference"]
            if ref is None:
                lines.append("  reference  none yet: the first complete window is frozen")
            else:
                text = f"  reference  {ref['kind']}, {ref['count']:,} events ({ref['id']})"
                lines.append(_fit(text, width))
            window = v["window"]
            if window is not None:
                span = f"{_short_time(window['start'])} - {_short_time(window['end'])[6:]}"
                lines.append(_fit(f"  window     {span}, {window['count']:,} events", width))
    return lines


def render_status(
    doc: dict[str, Any], *, url: str, width: int = WIDTH, show_ok: bool = False
) -> str:
    """The status document as text at most ``width`` columns wide (pure)."""
    counts = doc["counts"]
    worker = doc.get("worker") or {}
    head = f"driftwire status of {url}"
    if worker.get("partitions") is not None:
        parts = worker["partitions"]
        head += f" (partitions {','.join(map(str, parts)) or 'none'})"
    lines = [
        _fit(head, width),
        f"{counts['firing']} firing, {counts['breaching']} breaching, "
        f"{counts['insufficient_data']} insufficient data, {counts['ok']} ok",
        "",
    ]
    lines += _models(doc, width)
    conditions = doc["conditions"]
    one_model = len({(c["model"], c["model_version"]) for c in conditions}) <= 1
    shown = [c for c in conditions if c["state"] in ("firing", "breaching") or show_ok]
    shown = [c for c in shown if c["state"] != "insufficient_data"]
    if doc["models"]:
        lines.append("")
    insufficient = [c for c in conditions if c["state"] == "insufficient_data"]
    if not shown:
        if not (show_ok and insufficient):
            lines.append("Nothing fires or breaches." if not show_ok else "No conditions.")
    else:
        # STATE SEV | CONDITION (flexible) | VALUE | THRESHOLD | SINCE
        fixed = 9 + 1 + 4 + 1 + 1 + 8 + 1 + 9 + 1 + 11
        name_w = max(12, width - fixed)
        header = (
            f"{'STATE':<9} {'SEV':<4} {'CONDITION':<{name_w}} {'VALUE':>8} "
            f"{'THRESHOLD':>9} {'SINCE':<11}"
        )
        lines.append(header.rstrip())
        held = False
        for c in shown:
            state = _STATE_TEXT[c["state"]]
            if c.get("suppressed_by"):
                state, held = state + "*", True
            severity = {"critical": "crit", "warning": "warn"}.get(c["severity"] or "", "")
            name = _fit(_condition_name(c, one_model), name_w)
            row = (
                f"{state:<9} {severity:<4} {name:<{name_w}} {_num(c['value']):>8} "
                f"{_num(c['threshold']):>9} {_short_time(c['since']):<11}"
            )
            lines.append(row.rstrip())
        if held:
            lines.append("* held back: by a silence, or grouped into an upstream_change incident")
    reasons = Counter(c["reason"] or "no reason given" for c in insufficient)
    if reasons:
        lines += ["", "Insufficient data:"]
        for reason, n in reasons.most_common():
            lines += textwrap.wrap(
                reason, width, initial_indent=f"  {n:>4} x ", subsequent_indent=" " * 9
            )
    return "\n".join(lines)


def run_status(
    url: str,
    *,
    model: str | None = None,
    states: str | None = None,
    as_json: bool = False,
    show_ok: bool = False,
    access: Access | None = None,
) -> int:
    """``driftwire status``: print the worker's status; 0, or 1 if the worker is unreachable."""
    doc = fetch_status(url, model=model, states=states, access=access)
    if as_json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render_status(doc, url=url, show_ok=show_ok or bool(states)))
    return 0


def unreachable(url: str, exc: BaseException) -> DriftwireError:
    """The one line for a worker's HTTP endpoint that does not answer."""
    reason = getattr(exc, "reason", exc)
    return DriftwireError(
        f"cannot reach a worker at {url} ({reason}): is it running? "
        "Point --url at its http.host:http.port"
    )
