"""The plain WebSocket server: Flask + flask-sock on gevent (simple-websocket underneath, the
same library Flask-SocketIO's websocket transport runs on), with no Socket.IO or Engine.IO
framing: what Socket.IO's protocol layers cost over WebSocket itself.

`GET /ws` upgrades; the server sends a welcome frame, then every event (ticks and chat messages)
as one JSON text frame, the event's JSON exactly as the event log holds it. A text frame a client
sends is a chat message, published and broadcast to everyone. See docs/protocol.md.

    python -m servers.websocket --host 127.0.0.1 --port 5003 --rate 2
"""

from __future__ import annotations

import json
import os

import gevent
import gevent.event
import gevent.lock
import gevent.selectors
from flask import Flask, request
from flask_sock import ConnectionClosed, Sock

from servers.common import (
    MAX_BODY_BYTES,
    Counters,
    EventLog,
    Unpublishable,
    add_common_routes,
    counting,
    decode_json,
    json_error,
    main_of,
    origin_allowed,
)

NAME = "websocket"


class GreenletThread(gevent.Greenlet):
    """simple-websocket wants a Thread class; a greenlet with Thread's constructor serves
    (Engine.IO's gevent driver does the same), so nothing needs monkey-patching."""

    def __init__(self, target, args=(), kwargs=None):
        super().__init__(target, *args, **(kwargs or {}))

    def _run(self):
        return self.run()


def create_app(log: EventLog, counters: Counters) -> Flask:
    app = Flask(__name__)
    add_common_routes(app, NAME, log, counters)
    app.config["SOCK_SERVER_OPTIONS"] = {
        "thread_class": GreenletThread,
        "event_class": gevent.event.Event,
        "selector_class": gevent.selectors.DefaultSelector,
        "max_message_size": MAX_BODY_BYTES,
    }
    sock = Sock(app)

    @app.before_request
    def refuse_foreign_origins():
        if request.path == "/ws" and not origin_allowed(
            request.headers.get("Origin"), request.environ, app.config.get("ALLOWED_ORIGINS", [])
        ):
            return json_error(403, f"origin {request.headers.get('Origin')} may not open /ws")
        return None

    pid = os.getpid()
    connections: set = set()
    # One lock around every send: a broadcast (from the publisher or a chat handler) and a
    # welcome never interleave their frames on one socket, and a client registered under the
    # lock gets its welcome before any event.
    sending = gevent.lock.Semaphore()

    def broadcast(event: dict) -> None:
        text = log.newest_json()
        with sending:
            for ws in list(connections):
                try:
                    ws.send(text)
                except ConnectionClosed:
                    connections.discard(ws)
            counters.events_sent += len(connections)

    log.listeners.append(broadcast)

    @sock.route("/ws")
    def websocket(ws) -> None:
        with sending:
            connections.add(ws)
            counters.clients += 1
            ws.send(json.dumps({"type": "welcome", "last_seq": log.last_seq, "pid": pid}))
        try:
            while True:
                text = ws.receive()
                try:
                    if not isinstance(text, str):
                        raise Unpublishable("chat messages are text frames holding a JSON object")
                    log.publish_chat(decode_json(text))
                except Unpublishable as exc:
                    with sending:
                        ws.send(json.dumps({"type": "error", "error": str(exc)}))
        finally:
            with sending:
                connections.discard(ws)
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
