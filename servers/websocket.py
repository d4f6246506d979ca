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
import ssl
from collections import deque
from collections.abc import Iterable

import gevent
import gevent.event
import gevent.selectors
from flask import Flask, g, request
from flask_sock import Sock
from wsproto.events import TextMessage
from wsproto.utilities import LocalProtocolError

from servers import serve
from servers.clients import SLOW_CLIENT_BYTES, origin_allowed, resume_point, welcome
from servers.events import EventLog
from servers.messages import MAX_BODY_BYTES, Unpublishable, decode_json
from servers.queue import Queue
from servers.routes import json_error, server_app
from servers.stats import Counters
from servers.wsgi import shutdown_tcp

NAME = "websocket"
PROG = "servers.websocket"
DESCRIPTION = "Plain WebSocket push server (flask-sock, JSON text frames)."


class Peer:
    """One connected client: its simple-websocket connection, a send that never blocks (on the
    raw non-blocking socket, or over TLS its record layer's), and what could not be sent yet."""

    __slots__ = ("ws", "send_now", "backlog", "backlog_bytes", "limit", "writer", "dropped")

    def __init__(self, ws) -> None:
        self.ws = ws
        self.send_now = nonblocking_send(ws.sock)
        self.backlog: deque[bytes] = deque()
        self.backlog_bytes = 0
        self.limit = SLOW_CLIENT_BYTES  # more backlog than this: dropped (a replay raises it)
        self.writer: gevent.Greenlet | None = None
        self.dropped = False


def nonblocking_send(sock):
    """`send(data) -> bytes taken`, raising BlockingIOError rather than waiting. gevent's
    wrapper holds the real, non-blocking socket; over TLS, the SSL object writes records onto
    it (all of `data` or nothing: a retry must pass the same bytes, as the writer's sendall
    does)."""
    sslobj = getattr(sock, "_sslobj", None)
    if sslobj is None:
        return sock._sock.send

    def send(data: bytes) -> int:
        try:
            return sslobj.write(data)
        except ssl.SSLWantWriteError:
            raise BlockingIOError from None

    return send


class GreenletThread(gevent.Greenlet):
    """simple-websocket wants a Thread class; a greenlet with Thread's constructor serves
    (Engine.IO's gevent driver does the same), so nothing needs monkey-patching."""

    def __init__(self, target, args=(), kwargs=None):
        super().__init__(target, *args, **(kwargs or {}))

    def _run(self):
        return self.run()


def create_app(
    log: EventLog, counters: Counters, queue: Queue | None = None, origins: Iterable[str] = ()
) -> Flask:
    peers = Peers(log, counters)
    log.listeners.append(peers.broadcast)
    return server_app(
        __name__, NAME, log, counters, queue, origins, lambda app: add_ws_route(app, peers)
    )


def add_ws_route(app: Flask, peers: Peers) -> None:
    """GET /ws, checked before the upgrade: a WebSocket that receives chat messages."""
    app.config["SOCK_SERVER_OPTIONS"] = {
        "thread_class": GreenletThread,
        "event_class": gevent.event.Event,
        "selector_class": gevent.selectors.DefaultSelector,
        "max_message_size": MAX_BODY_BYTES,
    }
    sock = Sock(app)
    log, counters = peers.log, peers.counters

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
        after = request.args.get("after")
        g.after = None if after is None else resume_point(log, after, "after", text=True)
        return None

    @sock.route("/ws")
    def websocket(ws) -> None:
        peer = Peer(ws)
        peers.connections.add(peer)  # registered and welcomed (and replayed to) with no yield
        counters.clients += 1  # between: no event is sent before the welcome, none is missed
        peers.welcome(peer, g.after)  # and none is sent twice
        try:
            while True:
                text = ws.receive()
                try:
                    if not isinstance(text, str):
                        raise Unpublishable("chat messages are text frames holding a JSON object")
                    log.publish_chat(decode_json(text))
                except Unpublishable as exc:
                    peers.deliver(peer, json.dumps({"type": "error", "error": str(exc)}))
        finally:
            peers.connections.discard(peer)
            counters.clients -= 1


class Peers:
    """The connected clients, and the fan-out to them: a frame is never sent in a way that
    blocks the sender; a client more than SLOW_CLIENT_BYTES behind is dropped at send time."""

    def __init__(self, log: EventLog, counters: Counters) -> None:
        self.log, self.counters = log, counters
        self.connections: set[Peer] = set()

    def drop(self, peer: Peer, slow: bool = True) -> None:
        """A client that stopped reading (slow) or whose connection broke: disconnected, its
        backlog freed, and counted in /stats when it was slow."""
        if peer.dropped:
            return
        peer.dropped = True
        self.connections.discard(peer)
        self.counters.dropped_slow_clients += slow
        peer.backlog.clear()
        with contextlib.suppress(OSError):
            shutdown_tcp(peer.ws.sock)  # its reader sees the end; the handler cleans up

    def deliver(self, peer: Peer, text: str) -> None:
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
            self.connections.discard(peer)
            return
        if not peer.backlog:
            try:
                sent = peer.send_now(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.drop(peer, slow=False)
                return
            self.counters.bytes_written += sent
            if sent == len(data):
                return
            data = data[sent:]
        peer.backlog.append(data)
        peer.backlog_bytes += len(data)
        if peer.backlog_bytes > peer.limit:
            self.drop(peer)
        elif peer.writer is None:
            peer.writer = gevent.spawn(self.write_backlog, peer)

    def write_backlog(self, peer: Peer) -> None:
        try:
            while peer.backlog and not peer.dropped:
                chunk = peer.backlog[0]
                peer.ws.sock.sendall(chunk)  # blocks this greenlet only; counted by the socket
                peer.backlog.popleft()
                peer.backlog_bytes -= len(chunk)
                if peer.backlog_bytes <= SLOW_CLIENT_BYTES:  # a replay's backlog has drained
                    peer.limit = SLOW_CLIENT_BYTES
        except OSError:
            self.drop(peer, slow=False)
        finally:
            peer.writer = None

    def broadcast(self, event: dict | None) -> None:
        text = self.log.newest_json()  # encoded once; deliver never blocks, so no lock is needed
        deliver = self.deliver
        for peer in list(self.connections):
            deliver(peer, text)
        self.counters.events_sent += len(self.connections)

    def welcome(self, peer: Peer, after: int | None) -> None:
        """The welcome frame and a resume's replay (`servers.clients.welcome`): called with no
        yield after the peer is registered. The replay's backlog is not held against the
        slow-client bound until it has drained (the bound is counted on top of it)."""
        message, replay = welcome(self.log, after)
        self.deliver(peer, json.dumps({"type": "welcome", **message}))
        if not replay:
            return
        peer.limit = 2**62  # no bound while the replay is queued
        for text in replay:
            self.deliver(peer, text)
        self.counters.events_sent += len(replay)
        peer.limit = SLOW_CLIENT_BYTES + peer.backlog_bytes


def main(argv: list[str] | None = None) -> None:
    serve.main(PROG, DESCRIPTION, create_app, argv)


if __name__ == "__main__":
    main()
