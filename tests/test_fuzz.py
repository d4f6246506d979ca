"""Generated chat messages against the real servers (hypothesis): whatever a client sends, no
answer is a 5xx, everything the server sends back is strict JSON (RFC 8259: no NaN, no
Infinity), the server keeps answering /healthz and its log holds no traceback.

`make test` runs PUSHPULL_FUZZ=150 examples per transport family; a benchmark-style run:
    PUSHPULL_FUZZ=3000 .venv/bin/python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushpull.harness.probes import WebSocketProbe, call
from tests.conftest import running_server

pytestmark = pytest.mark.slow  # the full tier (make test-all)

EXAMPLES = int(os.environ.get("PUSHPULL_FUZZ", "150"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)  # fmt: skip
SCALARS = (
    st.none() | st.booleans() | st.floats() | st.text(max_size=20)
    | st.integers(min_value=-(2**70), max_value=2**70)
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
MESSAGES = VALUES | st.dictionaries(
    st.sampled_from(["t_send", "text", "pad", "x"]), VALUES, max_size=4
)


def strict(text: str | bytes) -> object:
    """JSON as a browser's JSON.parse reads it: NaN and Infinity are errors."""

    def refuse(constant):
        raise AssertionError(f"non-strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def post(url: str, raw: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url + "/messages", data=raw.encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_fuzz_rest_messages(tmp_path):
    stderr = tmp_path / "server.err"
    with running_server("servers.longpoll", 0, stderr=stderr) as (url, _pid):

        @SETTINGS
        @given(MESSAGES)
        def one(message):
            status, body = post(url, json.dumps(message))  # Python writes NaN and Infinity
            assert status < 500, (status, body)
            answer = strict(body)
            assert ("seq" in answer) if status == 201 else ("error" in answer)

        one()
        status, body = call(url + "/events?after=0&timeout=0")
        assert status == 200
        with urllib.request.urlopen(url + "/events?after=0&timeout=0", timeout=10) as response:
            strict(response.read())  # every published event, as clients receive them
        assert call(url + "/healthz")[0] == 200
    assert "Traceback" not in stderr.read_text()


def test_fuzz_socketio_messages(tmp_path):
    stderr = tmp_path / "server.err"
    with running_server("servers.push", 0, stderr=stderr) as (url, _pid):
        client = socketio.SimpleClient()
        client.connect(url, transports=["websocket"], wait_timeout=10)
        try:

            @SETTINGS
            @given(MESSAGES)
            def one(message):
                ack = client.call("message", message, timeout=10)
                assert isinstance(ack, dict) and ("seq" in ack or "error" in ack), ack
                strict(json.dumps(ack))

            one()
        finally:
            client.disconnect()
        assert call(url + "/healthz")[0] == 200
    assert "Traceback" not in stderr.read_text()


def test_fuzz_websocket_frames(tmp_path):
    stderr = tmp_path / "server.err"
    with running_server("servers.websocket", 0, stderr=stderr) as (url, _pid):
        probe = WebSocketProbe(url)
        try:

            @SETTINGS
            @given(MESSAGES | st.text(max_size=40))
            def one(message):
                probe.ws.send(message if isinstance(message, str) else json.dumps(message))
                frame = probe.ws.receive(timeout=10)  # the message as an event, or an error frame
                assert frame is not None, "the server answered nothing"
                answer = strict(frame)
                assert answer.get("type") == "error" or "seq" in answer, answer

            one()
        finally:
            probe.close()
        assert call(url + "/healthz")[0] == 200
    assert "Traceback" not in stderr.read_text()
