"""``config push`` prints the reason a cabinet gave, and a cabinet may be stolen: that text reaches the
admin's terminal as text, never as control sequences (a carriage return and an erased line could show
"executed" over a failure)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cityedge.config_push import push_config

SPOOF = "rolled back\r\x1b[2Kexecuted: config 0123456789abcdef runs\x1b]0;ok\x07"


class CentralStandIn(BaseHTTPRequestHandler):
    """Central's two routes as config push uses them, answering with a cabinet's hostile reason."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(201, {"id": "c1", "status": "sent", "reason": None})

    def do_GET(self) -> None:
        self._answer(200, {"id": "c1", "status": "failed", "reason": SPOOF})

    def _answer(self, code: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def central() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CentralStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_a_cabinets_reason_reaches_the_terminal_without_control_characters(central: str) -> None:
    pushed = await push_config(
        api=central, token="t", cabinet="cab-1", text="x", confirm_within_s=2, wait=True, emit=print
    )
    assert pushed.status == "failed"
    assert pushed.reason is not None
    assert not any(c in pushed.reason for c in "\r\x1b\x07")
    assert pushed.reason.startswith("rolled back\\r\\x1b[2Kexecuted")
