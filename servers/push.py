"""The push server: Flask-SocketIO on gevent (websocket through simple-websocket).

Every event, the publisher's ticks and the clients' chat messages alike, is broadcast to all
connected clients as `response`, exactly as in the classic Flask-SocketIO example
(`@socketio.on('message')` -> `emit('response', msg, broadcast=True)`); see docs/protocol.md.

    python -m servers.push --host 127.0.0.1 --port 5001 --rate 2
"""

from __future__ import annotations

import os

import gevent
from flask import Flask
from flask_socketio import SocketIO, emit

from servers.common import (
    MAX_BODY_BYTES,
    SLOW_CLIENT_BYTES,
    Counters,
    EventLog,
    SocketIOJSON,
    Unpublishable,
    add_common_routes,
    counting,
    main_of,
    origin_allowed,
)

NAME = "push"


def create_app(log: EventLog, counters: Counters) -> Flask:
    app = Flask(__name__)
    add_common_routes(app, NAME, log, counters)
    socketio = SocketIO(
        app,
        async_mode="gevent",
        # The client joins the broadcast before the connect handler runs, so every event with a
        # seq above the welcome's last_seq is sure to reach it.
        always_connect=True,
        max_http_buffer_size=MAX_BODY_BYTES,
        json=SocketIOJSON,  # undecodable packets are refused with an ack, not a traceback
        cors_allowed_origins=lambda origin, environ: origin_allowed(
            origin, environ, app.config.get("ALLOWED_ORIGINS", [])
        ),
        logger=False,
        engineio_logger=False,
    )
    pid = os.getpid()

    def broadcast(event: dict) -> None:
        # One encode, then one send per client (python-socketio encodes a broadcast once).
        counters.events_sent += counters.clients
        socketio.emit("response", event)

    log.listeners.append(broadcast)

    def drop_slow_clients() -> None:
        """Twice a second, off the fan-out path: a client whose Engine.IO queue holds more than
        SLOW_CLIENT_BYTES of events (it stopped reading) is disconnected and counted."""
        while True:
            gevent.sleep(0.5)
            if not log.last_seq:
                continue
            limit = max(16, SLOW_CLIENT_BYTES // len(log.newest_json()))
            for eio_socket in list(socketio.server.eio.sockets.values()):
                if not eio_socket.closed and eio_socket.queue.qsize() > limit:
                    eio_socket.close(wait=False, abort=True)
                    counters.dropped_slow_clients += 1

    gevent.spawn(drop_slow_clients)

    @socketio.on("connect")
    def on_connect(auth=None):
        counters.clients += 1
        emit("welcome", {"last_seq": log.last_seq, "pid": pid})

    @socketio.on("disconnect")
    def on_disconnect(reason=None):
        counters.clients -= 1

    @socketio.on("message")
    def on_message(message=None, *extra):
        if extra:
            return {"error": f"`message` takes one argument, got {1 + len(extra)}"}
        try:
            return {"seq": log.publish_chat(message)["seq"]}
        except Unpublishable as exc:
            return {"error": str(exc)}

    app.wsgi_app = counting(app.wsgi_app, counters)  # type: ignore[method-assign]
    return app


def main(argv: list[str] | None = None) -> None:
    main_of(
        "servers.push",
        "Flask-SocketIO push server (broadcasts every event as `response`).",
        create_app,
        argv,
    )


if __name__ == "__main__":
    main()
