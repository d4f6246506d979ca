"""A client that leaves cleanly while the server broadcasts must not stop the broadcast.

Half the clients close (a Close frame, Socket.IO's disconnect packet, or the end of an SSE
stream) at random moments while the server publishes at a high rate; the other half must
receive every event from their welcome to the end, and the server's log must hold no
traceback. On 85accd7 the plain WebSocket server's publisher died within seconds here
(`LocalProtocolError: ... cannot be sent in state ConnectionState.CLOSED`), which stopped the
stream for every client.

Every transport runs at the issue's acceptance size, 400 clients at 200 events/s (at 60 clients
the old server's race was seldom hit); PUSHPULL_FANOUT_CLIENTS sets another count.
"""

from __future__ import annotations

import os
import random
import time

import gevent
import pytest

from loadtests.leanhttp import ReactorSSE
from loadtests.leansio import LeanSocketIO
from loadtests.leanws import LeanWebSocket
from loadtests.ws import Reactor
from pushpull.harness.logscan import scan_log
from pushpull.harness.procs import get_json
from tests.conftest import running_server

pytestmark = pytest.mark.slow  # the full tier (make test-all)

CLIENTS = {"websocket": 400, "socketio": 400, "sse": 400}  # the acceptance size
RATE = float(os.environ.get("PUSHPULL_FANOUT_RATE", "200"))
CLOSING_S = 3.0  # the leavers close at random moments over this long

SERVERS = {"websocket": "servers.websocket", "socketio": "servers.push", "sse": "servers.longpoll"}


class Client:
    """One lean client of `transport` that records the seqs it receives after its welcome."""

    def __init__(self, transport: str, url: str, reactor: Reactor) -> None:
        self.baseline: int | None = None
        self.seqs: list[int] = []
        if transport == "sse":
            self.connection = ReactorSSE(url, reactor, self.on_event)
        else:
            kind = LeanWebSocket if transport == "websocket" else LeanSocketIO
            self.connection = kind(url, self.on_event)
        self.transport, self.reactor = transport, reactor

    def on_event(self, name: str, data, t_recv: int) -> None:
        if name == "welcome":
            self.baseline = data["last_seq"]
        elif name in ("response", "message") and isinstance(data, dict) and "seq" in data:
            self.seqs.append(data["seq"])

    def start(self) -> None:
        if self.transport == "sse":
            self.connection.start()
        else:
            self.connection.connect()
            self.reactor.add(self.connection)

    def close(self) -> None:
        if self.transport != "sse":
            self.reactor.discard(self.connection)
        self.connection.close()


@pytest.mark.parametrize("transport", sorted(SERVERS))
def test_clients_leaving_cleanly_never_stop_the_broadcast(transport, tmp_path):
    count = int(os.environ.get("PUSHPULL_FANOUT_CLIENTS", CLIENTS[transport]))
    log_path = tmp_path / "server.log"
    with running_server(SERVERS[transport], RATE, stderr=log_path) as (url, _pid):
        reactor = Reactor()
        clients = [Client(transport, url, reactor) for _ in range(count)]
        for batch in range(0, count, 50):  # 50 handshakes at a time
            gevent.joinall(
                [gevent.spawn(c.start) for c in clients[batch : batch + 50]], raise_error=True
            )
        deadline = time.monotonic() + 20
        while any(c.baseline is None for c in clients):
            assert time.monotonic() < deadline, "not every client was welcomed"
            gevent.sleep(0.05)
        rng = random.Random(19)
        leavers, stayers = clients[: count // 2], clients[count // 2 :]
        closers = [gevent.spawn_later(rng.uniform(0, CLOSING_S), c.close) for c in leavers]
        gevent.joinall(closers, timeout=CLOSING_S + 10)
        gevent.sleep(1.0)  # the broadcast goes on after the last close
        head = get_json(url + "/healthz")["last_seq"]
        deadline = time.monotonic() + 10
        while any((c.seqs or [0])[-1] < head for c in stayers):
            assert time.monotonic() < deadline, "the stayers stopped receiving"
            gevent.sleep(0.05)
        for client in stayers:
            client.close()
    published_while_closing = head - min(c.baseline for c in stayers)
    assert published_while_closing >= RATE * CLOSING_S / 2, "the publisher kept publishing"
    for client in stayers:
        received = [s for s in client.seqs if s <= head]
        assert received == list(range(client.baseline + 1, head + 1)), "every event, in order"
    errors = scan_log(log_path)
    assert errors["count"] == 0, errors["first"]


def test_the_slow_client_watchdog_waits_for_an_event_it_can_size():
    """A process that joins a shared stream knows its last seq (from Redis) before it holds any
    event: the watchdog must not size the newest event then (it died of an IndexError), and
    must start dropping once an event exists."""
    from servers.clients import watch_slow_clients
    from servers.events import EventLog

    log = EventLog()
    log.last_seq = 41  # as servers/queue.py sets it when the stream began before this process
    limits: list[int] = []
    watchdog = watch_slow_clients(log, limits.append)
    try:
        gevent.sleep(1.2)  # two watch periods with no event
        assert not watchdog.dead, watchdog.exception
        assert limits == []
        log.publish("tick", {"n": 1}, None)
        gevent.sleep(0.7)
        assert not watchdog.dead, watchdog.exception
        assert limits and all(limit >= 16 for limit in limits)
    finally:
        watchdog.kill()
