"""docs/protocol.md, checked against every transport of the registry with one parametrized test,
through the same probes (pushpull/harness/probes.py) that the harness's verify step uses."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from pushpull.core import transports
from pushpull.harness.probes import ProbeError, SocketIOProbe, SSEProbe, WebSocketProbe, call
from pushpull.harness.proxy import Proxy
from pushpull.harness.verify import verify
from tests.conftest import running_server


@pytest.mark.parametrize("transport", transports.NAMES)
def test_protocol(transport):
    spec = transports.get(transport)
    with running_server(spec.server, rate=20) as (url, pid):
        status, health = call(url + "/healthz")
        assert status == 200
        assert health == {
            "status": "ok",
            "server": spec.server_name,
            "pid": pid,
            "last_seq": health["last_seq"],
        }

        client = spec.probe_factory()(url)
        try:
            # Ticks: every seq after the baseline, in order, with publish and schedule times.
            ticks = client.receive(5)
            assert [e["seq"] for e in ticks] == list(
                range(client.baseline + 1, client.baseline + 6)
            )
            now = time.time_ns()
            for event in ticks:
                assert set(event) == {"seq", "t_pub", "t_sched", "kind", "data"}
                assert event["kind"] == "tick" and event["data"] == {}
                assert now - 5e9 < event["t_pub"] <= now
                assert 0 <= event["t_pub"] - event["t_sched"] < 1e9  # never early, on schedule
            periods = [b["t_sched"] - a["t_sched"] for a, b in zip(ticks, ticks[1:])]
            assert all(p == periods[0] for p in periods) and abs(periods[0] - 50e6) < 1e3

            # Chat: a message comes back to its sender as a `chat` event, in the same seq space.
            t_send = time.time_ns()
            acked = client.send({"text": "hello", "t_send": t_send})
            after = ticks[-1]["seq"]
            chat = None
            while chat is None:
                (event,) = client.receive(1)
                assert event["seq"] == after + 1, "events keep coming in seq order"
                after = event["seq"]
                if event["kind"] == "chat":
                    chat = event
            seq = chat["seq"]
            assert acked in (None, seq), "an acknowledgement names the chat event's seq"
            assert chat["data"] == {"text": "hello", "t_send": t_send}
            assert chat["t_sched"] == t_send and chat["t_pub"] >= t_send
        finally:
            client.close()

        status, stats = call(url + "/stats")
        assert status == 200 and stats["pid"] == pid and stats["published"] >= seq
        assert stats["events_sent"] >= 6 and stats["bytes_written"] > 0 and stats["requests"] >= 1
        status, published = call(
            url + f"/published?since={ticks[0]['t_pub']}&until={chat['t_pub']}"
        )
        assert published["first_seq"] == ticks[0]["seq"] and published["last_seq"] == seq
        assert published["count"] == seq - ticks[0]["seq"] + 1
        assert len(published["publisher_lag_us"]) == published["count"] - 1  # chat has no schedule

        for bad in ("/published?since=x", "/published?until=-5"):
            status, body = call(url + bad)
            assert status == 400 and "error" in body, bad

        assert verify(spec, url, pid) == [], "the harness's verify step passes the same server"


@pytest.mark.parametrize("transport", transports.NAMES)
def test_verify_refuses_a_server_of_another_transport(transport):
    """The verify step of each transport fails on a server that does not serve it."""
    spec = transports.get(transport)
    other = next(t for t in transports.REGISTRY if t.server != spec.server)
    with running_server(other.server, rate=5) as (url, pid):
        problems = verify(spec, url, pid)
    assert problems and all(isinstance(p, str) and "\n" not in p for p in problems)
    # not only the name in /healthz: the transport's own checks fail on the wrong server
    assert [p for p in problems if not p.startswith("/healthz")], problems


@pytest.mark.parametrize(
    "query",
    ["after=abc", "after=-1", "after=1&timeout=61", "after=1&timeout=nan", "after=1&timeout=x"],
)
def test_rest_rejects_bad_parameters(query):
    with running_server("servers.longpoll") as (url, _pid):
        status, body = call(f"{url}/events?{query}")
        assert status == 400 and isinstance(body["error"], str) and body["error"]


def test_rest_bounds_bodies_and_answers_json_errors():
    with running_server("servers.longpoll") as (url, _pid):
        status, body = call(url + "/messages", "POST", {"pad": "x" * 70_000})
        assert status == 413 and "error" in body
        request = urllib.request.Request(url + "/messages", data=b"[1, 2]", method="POST")
        request.add_header("Content-Type", "application/json")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=5)
        assert err.value.code == 400 and "error" in json.loads(err.value.read())
        status, body = call(url + "/nowhere")
        assert status == 404 and "error" in body


def test_sse_resumes_after_last_event_id():
    with running_server("servers.longpoll", rate=20) as (url, _pid):
        first = SSEProbe(url)
        seen = first.receive(5)
        first.close()
        time.sleep(0.3)  # events published meanwhile must be sent on resume
        resume = seen[-1]["seq"]
        resumed = SSEProbe(url, last_event_id=resume)
        assert resumed.baseline == resume
        seqs = [e["seq"] for e in resumed.receive(8)]
        assert seqs == list(range(resume + 1, resume + 9)), "nothing missed across the reconnect"
        resumed.close()
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        connection.request("GET", "/stream", headers={"Last-Event-ID": "soon"})
        response = connection.getresponse()
        assert response.status == 400 and "error" in json.loads(response.read())
        connection.close()


def test_long_poll_holds_until_an_event_or_the_timeout():
    with running_server("servers.longpoll", rate=0) as (url, _pid):
        _, body = call(url + "/events")
        started = time.monotonic()
        status, held = call(f"{url}/events?after={body['last_seq']}&timeout=0.5")
        assert status == 200 and held["events"] == []
        assert 0.45 < time.monotonic() - started < 3
        started = time.monotonic()
        _, instant = call(f"{url}/events?after={body['last_seq']}&timeout=0")
        assert instant["events"] == [] and time.monotonic() - started < 0.5


@pytest.mark.parametrize("transport", transports.NAMES)
def test_a_message_strict_json_cannot_carry_is_refused_without_a_gap(transport):
    """NaN is not JSON (RFC 8259): a browser's JSON.parse would reject every feed carrying it.
    The server refuses such a message in the transport's own way, and takes no seq for it."""
    spec = transports.get(transport)
    with running_server(spec.server, rate=0) as (url, _pid):
        probe = spec.probe_factory()(url)
        try:
            with pytest.raises(ProbeError, match="NaN"):
                probe.send({"x": float("nan")})
                probe.receive(1, timeout=2)  # a transport without acks answers with an error
            probe.send({"text": "fine"})
            (event,) = probe.receive(1)
            assert event["seq"] == probe.baseline + 1, "the refused message took no seq"
            assert event["data"] == {"text": "fine"}
        finally:
            probe.close()


def test_resumes_tell_the_truth():
    """A resume beyond the last seq is a 400, not an endless wait; one asking for events no
    longer retained says `truncated`, in the long-poll answer and in the SSE welcome."""
    with running_server("servers.longpoll", 100, "--retain-events", "5") as (url, _pid):
        time.sleep(0.3)
        _, body = call(url + "/events")
        last = body["last_seq"]
        assert last > 10
        status, body = call(f"{url}/events?after={last + 1000}&timeout=5")
        assert status == 400 and "beyond" in body["error"]
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        connection.request("GET", "/stream", headers={"Last-Event-ID": str(last + 1000)})
        response = connection.getresponse()
        assert response.status == 400 and "beyond" in json.loads(response.read())["error"]
        connection.close()
        status, body = call(f"{url}/events?after=1&timeout=0")
        assert status == 200 and body["truncated"] is True and len(body["events"]) <= 5
        resumed = SSEProbe(url, last_event_id=1)
        assert resumed.welcome.get("truncated") is True and resumed.baseline == 1
        resumed.close()
        fresh = SSEProbe(url)
        assert "truncated" not in fresh.welcome
        fresh.close()


BAD_MESSAGES = [
    {"x": float("nan")},
    {"x": float("inf")},
    {"t_send": True},
    {"t_send": 10**30},
    {"t_send": -1},
    {"t_send": 1.5},
    [1, 2],
    "just a string",
    5,
]
DEEP = '{"x":' + "[" * 30_000 + "]" * 30_000 + "}"  # under 64 KiB, beyond any decoder's nesting


def send_raw(probe, text: str) -> None:
    """A chat message as raw JSON text, whatever the transport (the probes encode dicts)."""
    if isinstance(probe, WebSocketProbe):
        probe.ws.send(text)
    elif isinstance(probe, SocketIOProbe):
        probe.client.client.eio.send('2["message",' + text + "]")
    else:
        request = urllib.request.Request(
            probe.url + "/messages", data=text.encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 400


@pytest.mark.parametrize("transport", transports.NAMES)
def test_bad_chat_messages_are_refused_and_break_nothing(transport, tmp_path):
    """The class of bad input: wrong types, out-of-range times, non-JSON values, nesting no
    decoder takes. Each is refused in the transport's way, takes no seq, leaves no traceback,
    and the next good message arrives as the next event."""
    spec = transports.get(transport)
    stderr = tmp_path / "server.err"
    with running_server(spec.server, 0, stderr=stderr) as (url, _pid):
        probe = spec.probe_factory()(url)
        try:
            for bad in BAD_MESSAGES:
                with pytest.raises(ProbeError):
                    probe.send(bad)
                    probe.receive(1, timeout=2)  # a transport without acks answers with an error
            if isinstance(probe, WebSocketProbe):
                send_raw(probe, DEEP)
                with pytest.raises(ProbeError, match="nested too deeply"):
                    probe.receive(1, timeout=2)
            else:
                send_raw(probe, DEEP)
            probe.send({"text": "fine"})
            (event,) = probe.receive(1)
            assert event["seq"] == probe.baseline + 1, "no refused message took a seq"
            assert event["data"] == {"text": "fine"}
            assert call(url + "/healthz")[0] == 200
        finally:
            probe.close()
    assert "Traceback" not in stderr.read_text()


def test_socketio_refuses_binary_payloads_and_extra_arguments(tmp_path):
    stderr = tmp_path / "server.err"
    with running_server("servers.push", 0, stderr=stderr) as (url, _pid):
        probe = SocketIOProbe(url, "websocket")
        try:
            binary = probe.client.call("message", {"x": b"\x00\xff"}, timeout=5)
            assert "JSON cannot carry" in binary["error"]
            extra = probe.client.call("message", ({"text": "a"}, 2), timeout=5)
            assert "one argument" in extra["error"]
            assert probe.send({"text": "fine"}) == probe.baseline + 1, "no seq was taken"
        finally:
            probe.close()
    assert "Traceback" not in stderr.read_text()


def websocket_opens(spec, url: str, origin: str | None) -> bool:
    """Whether the transport's websocket endpoint upgrades a browser-like handshake (Host with
    its port, as browsers send it) carrying this Origin."""
    import socket

    parts = urllib.parse.urlsplit(url)
    path = "/ws" if spec.server == "servers.websocket" else "/socket.io/?EIO=4&transport=websocket"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n" + (f"Origin: {origin}\r\n" if origin else "") + "\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(request.encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    return b" 101 " in status_line


@pytest.mark.parametrize("server", ["servers.push", "servers.websocket"])
def test_websocket_endpoints_accept_only_their_own_origin_unless_told(server):
    spec = next(t for t in transports.REGISTRY if t.server == server)
    foreign = "http://elsewhere.example"
    with running_server(server, 0) as (url, _pid):
        assert websocket_opens(spec, url, None), "a client without Origin (the load generator)"
        assert websocket_opens(spec, url, url), "a same-origin page"
        assert not websocket_opens(spec, url, foreign), "another site's page"
    with running_server(server, 0, "--allow-origin", foreign) as (url, _pid):
        assert websocket_opens(spec, url, foreign), "an origin named by --allow-origin"


def test_binding_beyond_loopback_warns_in_one_line(capsys):
    from servers.arguments import warn_if_exposed

    for quiet in ("127.0.0.1", "::1", "localhost", "127.0.0.5"):
        warn_if_exposed("servers.push", quiet)
    assert capsys.readouterr().err == ""
    warn_if_exposed("servers.push", "0.0.0.0")
    (line,) = capsys.readouterr().err.splitlines()
    assert "--host 0.0.0.0" in line and "no authentication" in line


@pytest.mark.slow
def test_an_overloaded_publisher_starves_nothing():
    """Ticks the server cannot keep up with (10,000 a second of 1 MB each) come late, and say
    so as publisher lag; /healthz keeps answering within a second, retention stays bounded in
    bytes, and SIGTERM still ends the server promptly."""
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    process = subprocess.Popen(
        [sys.executable, "-m", "servers.websocket", "--port", "0", "--rate", "10000",
         "--payload-bytes", "1000000", "--retain-bytes", "20000000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        url = json.loads(process.stdout.readline())["listening"]
        worst = 0.0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert call(url + "/healthz", timeout=5)[0] == 200
            worst = max(worst, time.monotonic() - started)
        assert worst < 1.0, f"/healthz took {worst:.2f} s"
        status, stats = call(url + "/stats", timeout=5)
        assert status == 200 and stats["rss_bytes"] < 400 * 2**20, stats["rss_bytes"]
        _, published = call(url + "/published?since=0", timeout=5)
        assert max(published["publisher_lag_us"]) > 100_000, "late ticks show as publisher lag"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=5)
        assert time.monotonic() - started < 5
    finally:
        process.kill()
        process.wait()


def stall(url: str, path: str, socketio_connect: bool):
    """A client that does the websocket handshake (and the Socket.IO connect), then never
    reads again: the socket with a tiny receive buffer."""
    import socket

    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    upgrade = (
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
    plain = path == "/stream"  # an SSE stream is a plain GET
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{'' if plain else upgrade}\r\n".encode()
    )
    if socketio_connect:
        time.sleep(0.3)
        mask = bytes([1, 2, 3, 4])
        sock.sendall(bytes([0x81, 0x82]) + mask + bytes(b ^ m for b, m in zip(b"40", mask)))
    return sock


@pytest.mark.slow
@pytest.mark.parametrize("server", ["servers.push", "servers.websocket"])
def test_a_client_that_stops_reading_is_dropped_and_the_others_go_on(server):
    """4 MB/s of events against a client that never reads: the server queues at most 8 MB for
    it, then drops it (counted in /stats), and the other clients keep receiving every event."""
    spec = next(t for t in transports.REGISTRY if t.server == server)
    path = "/ws" if server == "servers.websocket" else "/socket.io/?EIO=4&transport=websocket"
    with running_server(server, 100, "--payload-bytes", "40000") as (url, _pid):
        reader = spec.probe_factory()(url)
        stalled = stall(url, path, server == "servers.push")
        try:
            deadline = time.monotonic() + 20
            seen = []
            while call(url + "/stats")[1]["dropped_slow_clients"] == 0:
                assert time.monotonic() < deadline, "the stalled client was never dropped"
                seen += [e["seq"] for e in reader.receive(20, timeout=5)]
            seen += [e["seq"] for e in reader.receive(50, timeout=5)]
            # python-engineio's client hands each message to a thread of its own, so under load
            # two may swap places: every event must be there, in any order
            assert sorted(seen) == list(range(reader.baseline + 1, reader.baseline + 1 + len(seen)))
            status, stats = call(url + "/stats")
            assert stats["dropped_slow_clients"] == 1 and stats["rss_bytes"] < 300 * 2**20
        finally:
            stalled.close()
            reader.close()


@pytest.mark.slow
def test_a_stalled_sse_stream_is_dropped_and_long_poll_answers_are_bounded():
    with running_server("servers.longpoll", 100, "--payload-bytes", "40000") as (url, _pid):
        stalled = stall(url, "/stream", False)
        try:
            deadline = time.monotonic() + 20
            while call(url + "/stats")[1]["dropped_slow_clients"] == 0:
                assert time.monotonic() < deadline, "the stalled stream was never dropped"
                time.sleep(0.2)
            _, body = call(url + "/events?after=0&timeout=0", timeout=10)
            size = len(json.dumps(body["events"]))
            assert 0 < size <= 8 * 2**20 + 25_000 and body["events"][-1]["seq"] < body["last_seq"]
            assert call(url + "/healthz")[0] == 200
        finally:
            stalled.close()


def test_the_websocket_probe_takes_a_welcome_that_came_with_the_101():
    """A server that writes its welcome frame right behind the 101, in one TCP segment: the
    probe must see the welcome at once (simple-websocket's handshake left it in the buffer until
    more bytes came, so a server with no ticks failed the verify step one connect in ~12)."""
    import base64
    import hashlib
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        welcome = json.dumps({"type": "welcome", "last_seq": 7, "pid": 1}).encode()
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + bytes([0x81, len(welcome)]) + welcome
        )
        conn.recv(4096)  # until the probe closes
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        probe = WebSocketProbe(f"http://127.0.0.1:{port}")
        assert probe.baseline == 7
        probe.close()
    finally:
        listener.close()
        thread.join(5)


def raw_stats(url: str) -> tuple[int, int, dict]:
    """GET /stats on a connection of its own: the request's and the response's size on the wire,
    and the stats."""
    parts = urllib.parse.urlsplit(url)
    request = f"GET /stats HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(request)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return len(request), len(response), json.loads(body)


@pytest.mark.parametrize("transport", transports.NAMES)
def test_the_servers_byte_counts_are_what_crossed_the_wire(transport):
    """bytes_per_delivery comes from the server's bytes_written: it must be every byte the client
    received (HTTP headers, Engine.IO and WebSocket framing, SSE fields), no more, no less. A
    proxy counts what crossed while one client connects, sends one chat message and receives
    it; /stats is read beside the proxy, and its own first answer is counted by the server."""
    spec = transports.get(transport)
    with running_server(spec.server, 0) as (url, _pid), Proxy(url) as proxy:
        _, first_answer, before = raw_stats(url)
        client = spec.probe_factory()(proxy.url)
        try:
            client.send({"text": "one delivery", "t_send": time.time_ns()})
            (event,) = client.receive(1)
            assert event["kind"] == "chat"
        finally:
            client.close()
        proxy.wait_closed()
        second_request, _, after = raw_stats(url)
    assert proxy.bytes_down > 200 and proxy.bytes_up > 100
    assert after["bytes_written"] - before["bytes_written"] == first_answer + proxy.bytes_down
    assert after["bytes_read"] - before["bytes_read"] == proxy.bytes_up + second_request


WEBSOCKET_PATHS = {
    "servers.websocket": "/ws",
    "servers.push": "/socket.io/?EIO=4&transport=websocket",
}


@pytest.mark.parametrize("server", sorted(WEBSOCKET_PATHS))
def test_the_server_closes_the_tcp_connection_after_the_closing_handshake(server, tmp_path):
    """RFC 6455: a Close frame each way (section 5.5.1), then the server closes the TCP
    connection first (7.1.1). On 85accd7 the server answered the Close frame and then kept the
    connection open as if for another HTTP request: the client read no end of stream, and
    python-socketio's client waited out its 3 s close timeout on every disconnect."""
    import websocket  # websocket-client, what python-socketio's client runs on

    errors = tmp_path / "server.log"
    with running_server(server, 0, stderr=errors) as (url, _pid):
        ws = websocket.create_connection(
            url.replace("http", "ws", 1) + WEBSOCKET_PATHS[server], timeout=5
        )
        if server == "servers.push":  # Engine.IO open, then Socket.IO's connect and welcome
            assert ws.recv().startswith("0{")
            ws.send("40")
            assert ws.recv().startswith("40{")
        assert "welcome" in ws.recv()
        ws.send_close()
        ws.sock.settimeout(2)
        frame = ws.recv_frame()
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE, "the server answers Close with Close"
        assert ws.sock.recv(1) == b"", "then closes the connection (no wait for a timeout)"
        ws.sock.close()
        if server == "servers.push":  # python-socketio's own client, timed: 3.0 s before
            import socketio

            client = socketio.SimpleClient()
            client.connect(url, transports=["websocket"])
            started = time.monotonic()
            client.disconnect()
            assert time.monotonic() - started < 1.0, "a close not ended by the server's TCP close"
    assert "Traceback" not in errors.read_text()
