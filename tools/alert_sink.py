"""A receiver to try ``driftwire bridge webhook`` with: prints one line per alert POSTed to it.

``python tools/alert_sink.py [PORT]`` (default 8099) answers every ``POST`` with 200 and prints
the alert's status, severity and summary (the CloudEvent's ``data``); Ctrl-C stops it.
"""

from __future__ import annotations

import contextlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            data = json.loads(body).get("data", {})
            summary = data["annotations"]["summary"]
            line = f"{data['status']:8} {data['labels']['severity']:8} {summary}"
        except (ValueError, KeyError, AttributeError):
            line = f"not an alert: {body[:200]!r}"
        print(line, flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the alerts are the output."""


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8099
    server = ThreadingHTTPServer(("127.0.0.1", port), _Sink)
    print(f"alert sink on http://127.0.0.1:{port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
