"""The plain WebSocket server: Flask + flask-sock on gevent (simple-websocket underneath, the
same library Flask-SocketIO's websocket transport runs on), with no Socket.IO or Engine.IO
framing: what Socket.IO's protocol layers cost over WebSocket itself.

`GET /ws` upgrades; the server sends a welcome frame, then every event (ticks and chat messages)
as one JSON text frame, the event's JSON exactly as the event log holds it. `GET /ws?after=N`
resumes: the retained events after N come first, right behind the welcome. A text frame a client
sends is a chat message, published and broadcast to everyone. See docs/protocol.md.

    python -m servers.websocket --host 127.0.0.1 --port 5003 --rate 2
"""

from __future__ import annotations

import servers.patching  # noqa: F401 - first: gevent monkey-patching with --message-queue

# isort: split
import contextlib
import json
import os
import socket
from collections import deque

import gevent
import gevent.event
import gevent.selectors
from flask import Flask, g, request
from flask_sock import Sock
from wsproto.events import TextMessage
from wsproto.utilities import LocalProtocolError

from servers.common import (
    MAX_BODY_BYTES,
    SLOW_CLIENT_BYTES,
    Counters,
    EventLog,
    Unpublishable,
    add_common_routes,
    counting,
    decode_json,
    json_error,
    main_of,
    origin_allowed,
    parse_int_arg,
)
from servers.queue import Queue

NAME = "websocket"


class Peer:
    """One connected client: its simple-websocket connection, the raw (non-blocking) socket
    under it, and what could not be sent yet."""

    __slots__ = ("ws", "raw", "backlog", "backlog_bytes", "limit", "writer", "dropped")

    def __init__(self, ws) -> None:
        self.ws = ws
        self.raw = ws.sock._sock  # gevent's wrapper holds the real, non-blocking socket
        self.backlog: deque[bytes] = deque()
        self.backlog_bytes = 0
        self.limit = SLOW_CLIENT_BYTES  # more backlog than this: dropped (a replay raises it)
        self.writer: gevent.Greenlet | None = None
        self.dropped = False


class GreenletThread(gevent.Greenlet):
    """simple-websocket wants a Thread class; a greenlet with Thread's constructor serves
    (Engine.IO's gevent driver does the same), so nothing needs monkey-patching."""

    def __init__(self, target, args=(), kwargs=None):
        super().__init__(target, *args, **(kwargs or {}))

    def _run(self):
        return self.run()


def create_app(log: EventLog, counters: Counters, queue: Queue | None = None) -> Flask:
    app = Flask(__name__)
    add_common_routes(app, NAME, log, counters, queue)
    app.config["SOCK_SERVER_OPTIONS"] = {
        "thread_class": GreenletThread,
        "event_class": gevent.event.Event,
        "selector_class": gevent.selectors.DefaultSelector,
        "max_message_size": MAX_BODY_BYTES,
    }
    sock = Sock(app)

    @app.before_request
    def check_websocket_request():
        """Before the upgrade: another site's page is refused (403), and a resume point `after`
        must be an integer from 0 to the last seq (400)."""
        if request.path != "/ws":
            return None
        if not origin_allowed(
            request.headers.get("Origin"), request.environ, app.config.get("ALLOWED_ORIGINS", [])
        ):
            return json_error(403, f"origin {request.headers.get('Origin')} may not open /ws")
        g.after = parse_int_arg("after", default=None, minimum=0)
        if g.after is not None:
            log.check_after(g.after, "after")
        return None

    pid = os.getpid()
    connections: set[Peer] = set()

    def drop(peer: Peer, slow: bool = True) -> None:
        """A client that stopped reading (slow) or whose connection broke: disconnected, its
        backlog freed, and counted in /stats when it was slow."""
        if peer.dropped:
            return
        peer.dropped = True
        connections.discard(peer)
        counters.dropped_slow_clients += slow
        peer.backlog.clear()
        with contextlib.suppress(OSError):
            peer.raw.shutdown(socket.SHUT_RDWR)  # its reader sees the end; the handler cleans up

    def deliver(peer: Peer, text: str) -> None:
        """One text frame to one client without ever blocking the caller (the publisher, or a
        chat handler): sent at once if the socket takes it, otherwise queued behind what is
        queued and written by the peer's writer greenlet; past SLOW_CLIENT_BYTES queued, the
        client is dropped. Frames are encoded per client (a browser may have negotiated
        compression), and sent whole (sendall), in order."""
        if peer.dropped:
            return
        try:
            data = peer.ws.ws.send(TextMessage(data=text))
        except LocalProtocolError:
            # The closing handshake has begun (either side sent Close): no more frames may go to
            # this client, and its handler is about to end. Forget it; cutting the socket now
            # could lose the answering Close frame.
            peer.dropped = True
            connections.discard(peer)
            return
        if not peer.backlog:
            try:
                sent = peer.raw.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                drop(peer, slow=False)
                return
            counters.bytes_written += sent
            if sent == len(data):
                return
            data = data[sent:]
        peer.backlog.append(data)
        peer.backlog_bytes += len(data)
        if peer.backlog_bytes > peer.limit:
            drop(peer)
        elif peer.writer is None:
            peer.writer = gevent.spawn(write_backlog, peer)

    def write_backlog(peer: Peer) -> None:
        try:
            while peer.backlog and not peer.dropped:
                chunk = peer.backlog[0]
                peer.ws.sock.sendall(chunk)  # blocks this greenlet only; counted by the socket
                peer.backlog.popleft()
                peer.backlog_bytes -= len(chunk)
                if peer.backlog_bytes <= SLOW_CLIENT_BYTES:  # a replay's backlog has drained
                    peer.limit = SLOW_CLIENT_BYTES
        except OSError:
            drop(peer, slow=False)
        finally:
            peer.writer = None

    def broadcast(event: dict) -> None:
        text = log.newest_json()  # encoded once; deliver never blocks, so no lock is needed
        for peer in list(connections):
            deliver(peer, text)
        counters.events_sent += len(connections)

    log.listeners.append(broadcast)

    def welcome(peer: Peer, after: int | None) -> None:
        """The welcome frame, then, for a resume after `after`, the retained events since then:
        called with no yield after the peer is registered, so the replay ends at the welcome's
        head and every later event follows it live. The replay's backlog is not held against
        the slow-client bound until it has drained (the bound is counted on top of it)."""
        head = log.last_seq
        message = {"type": "welcome", "last_seq": head, "head": head, "pid": pid}
        replay: list[str] = []
        if after is not None:
            replay, truncated = log.since(after)
            message["last_seq"] = after
            if truncated:
                message["truncated"] = True
        deliver(peer, json.dumps(message))
        if not replay:
            return
        peer.limit = 2**62  # no bound while the replay is queued
        for text in replay:
            deliver(peer, text)
        counters.events_sent += len(replay)
        peer.limit = SLOW_CLIENT_BYTES + peer.backlog_bytes

    @sock.route("/ws")
    def websocket(ws) -> None:
        peer = Peer(ws)
        connections.add(peer)  # registered and welcomed (and replayed to) with no yield
        counters.clients += 1  # between: no event is sent before the welcome, none is missed
        welcome(peer, g.after)  # and none is sent twice
        try:
            while True:
                text = ws.receive()
                try:
                    if not isinstance(text, str):
                        raise Unpublishable("chat messages are text frames holding a JSON object")
                    log.publish_chat(decode_json(text))
                except Unpublishable as exc:
                    deliver(peer, json.dumps({"type": "error", "error": str(exc)}))
        finally:
            connections.discard(peer)
            counters.clients -= 1

    app.wsgi_app = counting(app.wsgi_app, counters)  # type: ignore[method-assign]
    return app


def main(argv: list[str] | None = None) -> None:
    main_of(
        "servers.websocket",
        "Plain WebSocket push server (flask-sock, JSON text frames).",
        create_app,
        argv,
    )


if __name__ == "__main__":
    main()
