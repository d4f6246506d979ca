"""The push server: Flask-SocketIO on gevent (websocket through simple-websocket).

Every event, the publisher's ticks and the clients' chat messages alike, is broadcast to all
connected clients as `response`, exactly as in the classic Flask-SocketIO example
(`@socketio.on('message')` -> `emit('response', msg, broadcast=True)`); see docs/protocol.md.
A client that connects with `auth={"after": N}` resumes: the retained events after N come first.

    python -m servers.push --host 127.0.0.1 --port 5001 --rate 2
"""

from __future__ import annotations

import servers.patching  # noqa: F401 - first: gevent monkey-patching with --message-queue

# isort: split
import json
import os

import gevent
import socketio
from flask import Flask, request
from flask_socketio import SocketIO
from socketio import packet

from servers.clock import now_ns
from servers.common import (
    MAX_BODY_BYTES,
    SLOW_CLIENT_BYTES,
    BadRequest,
    Counters,
    EventLog,
    SocketIOJSON,
    Unpublishable,
    add_common_routes,
    counting,
    main_of,
    origin_allowed,
    strict_json,
)
from servers.queue import Queue, event_text, log_schedule, make_event

NAME = "push"


def create_app(log: EventLog, counters: Counters, queue: Queue | None = None) -> Flask:
    app = Flask(__name__)
    add_common_routes(app, NAME, log, counters, queue)
    queue_options = {}
    if (
        queue is not None
    ):  # Flask-SocketIO's message queue on Redis, each event applied as it passes
        queue_options["client_manager"] = EventLogRedisManager(queue, log, counters)
    socketio = SocketIO(
        app,
        **queue_options,
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

    if queue is None:
        log.listeners.append(broadcast)
    else:
        log.bus = SocketIOBus(queue, lambda event: socketio.emit("response", event))
        log.last_seq = queue.last_seq()  # the stream may have begun before this process
        # Listen to the queue from the start, not from the first client's connect (python-socketio
        # starts its manager lazily): this process's log must see every event.
        socketio.server.manager_initialized = True
        socketio.server.manager.initialize()

    replaying: dict[str, int] = {}  # Engine.IO sid -> events replayed, not held against it

    def drop_slow_clients() -> None:
        """Twice a second, off the fan-out path: a client whose Engine.IO queue holds more than
        SLOW_CLIENT_BYTES of events (it stopped reading) is disconnected and counted; a resumed
        client's replay is counted on top of that until its queue is back under the bound."""
        while True:
            gevent.sleep(0.5)
            if not log.last_seq:
                continue
            limit = max(16, SLOW_CLIENT_BYTES // len(log.newest_json()))
            sockets = socketio.server.eio.sockets
            for gone in replaying.keys() - sockets.keys():
                del replaying[gone]
            for eio_sid, eio_socket in list(sockets.items()):
                queued = eio_socket.queue.qsize()
                if queued <= limit:
                    replaying.pop(eio_sid, None)
                elif not eio_socket.closed and queued > limit + replaying.get(eio_sid, 0):
                    eio_socket.close(wait=False, abort=True)
                    counters.dropped_slow_clients += 1

    gevent.spawn(drop_slow_clients)
    refuse_bad_resume_points(socketio.server, log)

    def send(event: str, data: dict, sid: str) -> None:
        # To this process's client only: never through the queue, so it cannot yield.
        socketio.server.emit(event, data, to=sid, ignore_queue=True)

    @socketio.on("connect")
    def on_connect(auth=None):
        """The welcome, then for a resume the retained events after `auth.after`, all with no
        yield: python-socketio joined the client to the broadcast before this handler runs
        (always_connect), so the replay ends at the welcome's head and every later event
        follows live. The resume point was checked before the connect was accepted."""
        counters.clients += 1
        head = log.last_seq
        after = auth.get("after") if isinstance(auth, dict) else None
        if after is None:
            send("welcome", {"last_seq": head, "head": head, "pid": pid}, request.sid)
            return
        replay, truncated = log.since(after)
        welcome = {"last_seq": after, "head": head, "pid": pid}
        if truncated:
            welcome["truncated"] = True
        send("welcome", welcome, request.sid)
        for text in replay:
            send("response", json.loads(text), request.sid)
        counters.events_sent += len(replay)
        if replay:
            eio_sid = socketio.server.manager.eio_sid_from_sid(request.sid, "/")
            replaying[eio_sid] = len(replay)

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


def resume_error(auth: object, log: EventLog) -> str | None:
    """Why a connect's `auth` is not a valid resume (None when it is, or asks for none): auth,
    when given, is a JSON object, and its `after`, when given, an integer from 0 to the last seq."""
    if auth is None:
        return None
    if not isinstance(auth, dict):
        return 'auth must be a JSON object, e.g. {"after": SEQ}'
    if auth.get("after") is None:
        return None
    try:
        log.resume_point(auth["after"], "auth.after")
    except BadRequest as exc:
        return exc.description
    return None


def refuse_bad_resume_points(server: socketio.Server, log: EventLog) -> None:
    """Check a connect's resume point before python-socketio accepts it: with always_connect it
    sends CONNECT before the connect handler runs, so a refusal there would reach the client as
    a bare DISCONNECT. A bad one gets CONNECT_ERROR {"message": reason} instead, and the client
    is never joined. (python-socketio has no hook before its connect handling: this wraps its
    `_handle_connect(eio_sid, namespace, data)`, the same in every 5.x; tests/test_resume.py
    checks the refusal.)"""
    handle_connect = server._handle_connect

    def checked_connect(eio_sid, namespace, data):
        reason = resume_error(data, log)
        if reason is None:
            return handle_connect(eio_sid, namespace, data)
        server._send_packet(
            eio_sid,
            server.packet_class(
                packet.CONNECT_ERROR, data={"message": reason}, namespace=namespace or "/"
            ),
        )
        return None

    server._handle_connect = checked_connect


class EventLogRedisManager(socketio.RedisManager):
    """python-socketio's Redis manager (what Flask-SocketIO builds for `message_queue=redis://`),
    on the queue's channel, that also takes every broadcast event into this process's event log
    as it goes to this process's clients: the welcome's last_seq, /published and the slow-client
    bound then count exactly what this process's clients were sent, whichever process published."""

    def __init__(self, queue: Queue, log: EventLog, counters: Counters) -> None:
        super().__init__(queue.url, channel=queue.socketio_channel)
        self.log, self.counters = log, counters

    def _handle_emit(self, message):
        data = message.get("data")
        if message.get("event") == "response" and message.get("room") is None and data:
            event = data[0]
            text = event_text(event, strict_json(event["data"]))
            self.log.apply(event["seq"], event["t_pub"], log_schedule(event), text, event)
            self.counters.events_sent += self.counters.clients
        super()._handle_emit(message)


class SocketIOBus:
    """The push server's publish with a queue: the seq from Redis, then one emit, which
    Flask-SocketIO's queue carries to every process (this one included)."""

    def __init__(self, queue: Queue, emit_event) -> None:
        self.queue, self.emit_event = queue, emit_event

    def publish(self, kind: str, data: dict, t_sched: int | None, data_json: str) -> dict:
        event = make_event(self.queue.next_seq(), now_ns(), kind, data, t_sched)
        self.emit_event(event)
        return event


def main(argv: list[str] | None = None) -> None:
    main_of(
        "servers.push",
        "Flask-SocketIO push server (broadcasts every event as `response`).",
        create_app,
        argv,
    )


if __name__ == "__main__":
    main()
