"""The lean Socket.IO client against the references: wsproto for frames, python-socketio's Client
for everything a pushpull client sees."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import gevent
import socketio
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode

from loadtests.leansio import LeanSocketIO
from loadtests.ws import FrameDecoder, Reactor
from tests.conftest import ROOT, running_server


def server_frames() -> tuple[bytes, list[tuple[int, bytes]]]:
    """A byte stream of server frames (wsproto encodes) and the messages it carries."""
    proto = FrameProtocol(client=False, extensions=[])
    stream, expected = bytearray(), []
    for size in (0, 5, 125, 126, 127, 65535, 65536, 200_000):
        text = ("x" * size) + "é"
        stream += proto.send_data(text, fin=True)
        expected.append((Opcode.TEXT, text.encode()))
    # a fragmented message with a ping between its fragments
    stream += proto.send_data("hello ", fin=False)
    stream += proto.ping(b"are you there")
    expected.append((Opcode.PING, b"are you there"))
    stream += proto.send_data("fragmented ", fin=False)
    stream += proto.send_data("world", fin=True)
    expected.append((Opcode.TEXT, b"hello fragmented world"))
    stream += proto.send_data(b"\x00\x01binary", fin=True)
    expected.append((Opcode.BINARY, b"\x00\x01binary"))
    stream += proto.close(CloseReason.NORMAL_CLOSURE, "bye")
    expected.append((Opcode.CLOSE, b"\x03\xe8bye"))
    return bytes(stream), expected


def test_frame_decoder_matches_wsproto_in_any_chunking():
    stream, expected = server_frames()
    rng = random.Random(7)
    for _ in range(30):
        decoder, got, pos = FrameDecoder(), [], 0
        while pos < len(stream):
            step = rng.choice((1, 2, 3, 7, 64, 1000, 70_000))
            got += decoder.feed(stream[pos : pos + step])
            pos += step
        assert got == expected
        assert decoder.buffer == b"" and decoder.fragments == []


def test_lean_client_sees_what_python_socketio_sees():
    with running_server("servers.push", rate=40) as (url, _pid):
        reference: list[dict] = []
        reference_welcome: list[dict] = []
        client = socketio.Client(reconnection=False)
        client.on("welcome", reference_welcome.append)
        client.on("response", reference.append)
        client.connect(url, transports=["websocket"], wait_timeout=10)

        lean_events: list[tuple[str, dict]] = []
        lean = LeanSocketIO(url, lambda name, data, t_recv: lean_events.append((name, data)))
        lean.connect()
        reactor = Reactor()
        reactor.add(lean)
        gevent.sleep(0.5)
        lean.emit("message", {"text": "from lean", "t_send": time.time_ns()})
        client.emit("message", {"text": "from python-socketio", "t_send": time.time_ns()})
        gevent.sleep(1.0)
        lean.close()
        reactor.discard(lean)
        client.disconnect()

    names = [name for name, _ in lean_events]
    assert names[0] == "welcome" and set(names[1:]) == {"response"}
    lean_baseline = lean_events[0][1]["last_seq"]
    lean_seen = {event["seq"]: event for name, event in lean_events if name == "response"}
    reference_seen = {event["seq"]: event for event in reference}
    low = max(lean_baseline, reference_welcome[0]["last_seq"]) + 1
    high = min(max(lean_seen), max(reference_seen))
    assert high - low >= 30, "both clients saw a second of 40 events/s"
    common = range(low, high + 1)
    head = ("seq", "t_pub", "t_sched", "kind")  # what the lean client reads of an event
    assert [{k: lean_seen[s][k] for k in head} for s in common] == [
        {k: reference_seen[s][k] for k in head} for s in common
    ]
    chats = [reference_seen[s]["data"]["text"] for s, e in lean_seen.items() if e["kind"] == "chat"]
    assert sorted(chats) == ["from lean", "from python-socketio"]
    assert all(s > lean_baseline for s in lean_seen), "nothing at or below the baseline"


def test_lean_client_reports_the_server_going_away():
    with running_server("servers.push", rate=0) as (url, _pid):
        lean = LeanSocketIO(url, lambda *args: None)
        lean.connect()
        waiter = gevent.spawn(lean.run)
        assert lean.connected and not lean.closed.is_set()
    waiter.join(timeout=10)
    assert lean.closed.is_set() and not lean.connected


PING_SERVER = """
import sys
from flask_socketio import SocketIO
from servers import push

original = SocketIO.__init__

def fast_pings(self, *args, **kwargs):
    kwargs.update(ping_interval=0.3, ping_timeout=0.3)
    original(self, *args, **kwargs)

SocketIO.__init__ = fast_pings
push.main(sys.argv[1:])
"""


def test_lean_client_answers_engineio_pings():
    """With pings every 0.3 s the server drops a client that does not answer; ours stays."""
    process = subprocess.Popen(
        [sys.executable, "-c", PING_SERVER, "--port", "0", "--rate", "20"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        url = json.loads(process.stdout.readline())["listening"]
        seen: list[int] = []
        lean = LeanSocketIO(url, lambda name, data, t: seen.append(data.get("seq", 0)))
        lean.connect()
        gevent.spawn(lean.run)
        gevent.sleep(2.0)  # several ping intervals
        assert lean.connected and not lean.closed.is_set()
        assert len(seen) > 25
        lean.close()
    finally:
        process.terminate()
        process.wait()


def test_reactor_serves_many_connections():
    with running_server("servers.push", rate=20) as (url, _pid):
        seen: list[list[int]] = [[] for _ in range(50)]
        reactor = Reactor()
        clients = []
        for i in range(50):

            def on_event(name, data, t_recv, mine=seen[i]):
                mine.append(data["last_seq"] if name == "welcome" else data["seq"])

            client = LeanSocketIO(url, on_event)
            client.connect()
            reactor.add(client)
            clients.append(client)
        gevent.sleep(1.0)
        for client in clients:
            reactor.discard(client)
            client.close()
    assert not reactor.connections
    last = max(seqs[-1] for seqs in seen)
    for baseline, *seqs in seen:
        assert seqs == list(range(baseline + 1, baseline + 1 + len(seqs))), "every event, in order"
        assert len(seqs) >= 15 and seqs[-1] >= last - 1
