"""The lean clients on the reactor against reference clients: pushpull's SSE parser against
sseclient-py, the reactor's SSE, long-poll and short-poll connections against the probes (the
standard library's http.client), and the plain WebSocket client against simple-websocket's."""

from __future__ import annotations

import json
import random
import time

import gevent
from sseclient import SSEClient

from loadtests.leanhttp import ReactorHTTP, ReactorSSE
from loadtests.leanws import LeanWebSocket
from loadtests.ws import Reactor
from pushpull.core.sse import SSEParser
from pushpull.harness.probes import PollProbe, SSEProbe, WebSocketProbe
from tests.conftest import running_server

STREAM = (
    ': a comment\n\nevent: welcome\ndata: {"last_seq": 3}\n\n'
    'id: 4\ndata: {"seq": 4, "text": "caf\u00e9"}\n\n'
    "id: 5\r\ndata: first line\r\ndata: second line\r\n\r\n"
    "event: note\nid: 6\ndata:no space\n\n"
    ": keepalive\n\n"
    'data: {"seq": 7}\n\n'
)


def test_sse_parser_matches_sseclient_py_in_any_chunking():
    reference = [(e.event, e.data, e.id) for e in SSEClient(iter([STREAM.encode()])).events()]
    assert len(reference) == 5
    rng = random.Random(11)
    for _ in range(50):
        parser, got, pos = SSEParser(), [], 0
        while pos < len(STREAM):
            step = rng.choice((1, 2, 3, 5, 17, 200))
            got += parser.feed(STREAM[pos : pos + step])
            pos += step
        assert [(n, d) for n, d, _ in got] == [(n, d) for n, d, _ in reference]
        # sseclient-py reports an event's own id; the parser keeps the stream's last id
        assert [i for _, _, i in got] == [None, "4", "5", "6", "6"]


def same_event(lean: dict, reference: dict) -> bool:
    """The lean clients read an event's head (seq, t_pub, t_sched, kind) and skip its data."""
    return set(lean) >= {"seq", "t_pub", "t_sched", "kind"} and all(
        reference[key] == value for key, value in lean.items()
    )


def contiguous(seqs: list[int], baseline: int) -> bool:
    return seqs == list(range(baseline + 1, baseline + 1 + len(seqs)))


def test_reactor_sse_and_polls_see_what_the_probes_see():
    with running_server("servers.longpoll", rate=40) as (url, _pid):
        reactor = Reactor()
        streamed: list[dict] = []
        welcome: list[int] = []

        def on_sse(name, data, t_recv):
            (welcome.append(data["last_seq"]) if name == "welcome" else streamed.append(data))

        stream = ReactorSSE(url, reactor, on_sse)
        stream.start()
        polled: dict[float, list[dict]] = {5.0: [], 0.0: []}
        pollers = {}
        for hold in polled:
            probe = PollProbe(url, hold_s=0)
            cursor = [probe.baseline]

            def on_answer(status, raw, t_recv, hold=hold, cursor=cursor):
                assert status == 200
                events = json.loads(raw)["events"]
                polled[hold].extend(events)
                if events:
                    cursor[0] = events[-1]["seq"]
                pollers[hold].send("GET", f"/events?after={cursor[0]}&timeout={hold:g}")

            pollers[hold] = ReactorHTTP(url, reactor, on_answer)
            pollers[hold].start()
            pollers[hold].send("GET", f"/events?after={cursor[0]}&timeout={hold:g}")
            polled[hold].append({"seq": probe.baseline, "baseline": True})
        gevent.sleep(1.0)
        reference = SSEProbe(url)
        expected = reference.receive(20)  # blocking: the reactor's sockets wait meanwhile
        reference.close()
        gevent.sleep(0.5)
        for connection in (stream, *pollers.values()):
            connection.close()
    by_seq = {e["seq"]: e for e in expected}
    assert welcome and contiguous([e["seq"] for e in streamed], welcome[0])
    for hold, events in polled.items():
        baseline = events.pop(0)["seq"]
        assert contiguous([e["seq"] for e in events], baseline), f"hold {hold}"
        assert len(events) >= 50
    for events in (streamed, polled[5.0], polled[0.0]):
        common = [e for e in events if e["seq"] in by_seq]
        assert len(common) == 20 and all(same_event(e, by_seq[e["seq"]]) for e in common)


def test_lean_websocket_sees_what_simple_websocket_sees():
    with running_server("servers.websocket", rate=40) as (url, _pid):
        reactor = Reactor()
        seen: list[dict] = []
        welcomes: list[dict] = []

        def on_event(name, data, t_recv):
            (welcomes.append(data) if name == "welcome" else seen.append(data))

        lean = LeanWebSocket(url, on_event)
        lean.connect()
        reactor.add(lean)
        reference = WebSocketProbe(url)
        gevent.sleep(0.2)
        lean.emit_chat({"text": "from lean", "t_send": time.time_ns()})
        expected = reference.receive(20)
        gevent.sleep(0.5)
        reactor.discard(lean)
        lean.close()
        reference.close()
    assert welcomes and welcomes[0]["type"] == "welcome"
    assert contiguous([e["seq"] for e in seen], welcomes[0]["last_seq"])
    by_seq = {e["seq"]: e for e in seen}
    assert all(same_event(by_seq[e["seq"]], e) for e in expected), "same events, same seqs"
    assert any(e["kind"] == "chat" and e["data"]["text"] == "from lean" for e in expected)


def test_sse_parser_fast_path_agrees_with_the_general_one():
    one = 'id: 41\ndata: {"seq":41,"t_pub":1}\n\n'
    assert SSEParser().feed(one) == [("message", '{"seq":41,"t_pub":1}', "41")]
    for text in (
        one + one,
        one[:-1],
        "id: 4\ndata: a\ndata: b\n\n",
        "id: 4\nevent: x\ndata: a\n\n",
    ):
        general = SSEParser()
        general.feed(": warm the general path\n\n")
        assert SSEParser().feed(text) == general.feed(text), text


def test_reactor_sse_resumes_with_last_event_id_after_a_drop():
    """What SSEUser does when its stream drops: start() again, resuming after the last id."""
    with running_server("servers.longpoll", rate=40) as (url, _pid):
        reactor = Reactor()
        seen: list[int] = []
        welcomes: list[int] = []

        def on_sse(name, data, t_recv):
            (welcomes.append(data["last_seq"]) if name == "welcome" else seen.append(data["seq"]))

        stream = ReactorSSE(url, reactor, on_sse)
        stream.start()
        gevent.sleep(0.5)
        stream.sock.shutdown(2)  # the connection drops under the client
        stream.closed.wait(5)
        before = list(seen)
        assert stream.closed.is_set() and stream.last_event_id == str(before[-1])
        gevent.sleep(0.3)  # events published meanwhile must come first on resume
        stream.start()
        gevent.sleep(0.5)
        stream.close()
    assert welcomes == [welcomes[0], before[-1]], "the resumed stream starts after the last id"
    assert seen == list(range(welcomes[0] + 1, welcomes[0] + 1 + len(seen))), "no gap, no repeat"
    assert len(seen) >= 40
