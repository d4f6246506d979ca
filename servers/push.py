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
from collections.abc import Iterable
from functools import partial

import socketio
from flask import Flask, request
from flask_socketio import SocketIO
from socketio import packet

from servers import serve
from servers.clients import origin_allowed, resume_point, watch_slow_clients, welcome
from servers.clock import now_ns
from servers.events import EventLog
from servers.messages import MAX_BODY_BYTES, SocketIOJSON, Unpublishable, strict_json
from servers.queue import Queue, event_text, log_schedule, make_event
from servers.routes import BadRequest, server_app
from servers.stats import Counters

NAME = "push"
PROG = "servers.push"
DESCRIPTION = "Flask-SocketIO push server (broadcasts every event as `response`)."


def create_app(
    log: EventLog, counters: Counters, queue: Queue | None = None, origins: Iterable[str] = ()
) -> Flask:
    socketio = partial(add_socketio, log=log, counters=counters, queue=queue)
    return server_app(__name__, NAME, log, counters, queue, origins, socketio)


def add_socketio(app: Flask, log: EventLog, counters: Counters, queue: Queue | None) -> SocketIO:
    """Flask-SocketIO on `app`: its server, the fan-out of every event, the slow-client
    watchdog, the check of resume points and the event handlers."""
    socketio = socketio_server(app, log, counters, queue)
    fan_out(socketio, log, counters, queue)
    slow = SlowClients(socketio.server, counters)
    watch_slow_clients(log, slow.drop_over)
    refuse_bad_resume_points(socketio.server, log)
    add_handlers(socketio, log, counters, slow)
    return socketio


def socketio_server(app: Flask, log: EventLog, counters: Counters, queue: Queue | None) -> SocketIO:
    queue_options = {}
    if (
        queue is not None
    ):  # Flask-SocketIO's message queue on Redis, each event applied as it passes
        queue_options["client_manager"] = EventLogRedisManager(queue, log, counters)
    return SocketIO(
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


def fan_out(socketio: SocketIO, log: EventLog, counters: Counters, queue: Queue | None) -> None:
    """Every event to every client as `response`: from the event log's listener, or with a
    queue through Flask-SocketIO's message queue (which this process's log also listens to)."""

    def broadcast(event: dict) -> None:
        # One encode, then one send per client (python-socketio encodes a broadcast once).
        counters.events_sent += counters.clients
        socketio.emit("response", event)

    if queue is None:
        log.listeners.append(broadcast)
        return
    log.bus = SocketIOBus(queue, lambda event: socketio.emit("response", event))
    log.last_seq = queue.last_seq()  # the stream may have begun before this process
    # Listen to the queue from the start, not from the first client's connect (python-socketio
    # starts its manager lazily): this process's log must see every event.
    socketio.server.manager_initialized = True
    socketio.server.manager.initialize()


class SlowClients:
    """A client whose Engine.IO queue holds more than SLOW_CLIENT_BYTES of events (it stopped
    reading) is disconnected and counted; a resumed client's replay is counted on top of that
    until its queue is back under the bound."""

    def __init__(self, server: socketio.Server, counters: Counters) -> None:
        self.server, self.counters = server, counters
        self.replaying: dict[str, int] = {}  # Engine.IO sid -> events replayed, not held against it

    def replayed(self, sid: str, count: int) -> None:
        """The client `sid` (Socket.IO's) was just sent a replay of `count` events."""
        self.replaying[self.server.manager.eio_sid_from_sid(sid, "/")] = count

    def drop_over(self, limit: int) -> None:
        """Drop every client with more than `limit` events queued (beyond its replay)."""
        sockets = self.server.eio.sockets
        for gone in self.replaying.keys() - sockets.keys():
            del self.replaying[gone]
        for eio_sid, eio_socket in list(sockets.items()):
            queued = eio_socket.queue.qsize()
            if queued <= limit:
                self.replaying.pop(eio_sid, None)
            elif not eio_socket.closed and queued > limit + self.replaying.get(eio_sid, 0):
                eio_socket.close(wait=False, abort=True)
                self.counters.dropped_slow_clients += 1


def add_handlers(socketio: SocketIO, log: EventLog, counters: Counters, slow: SlowClients) -> None:
    """connect (the welcome and a resume's replay), disconnect, and message (a chat message)."""

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
        message, replay = welcome(log, auth.get("after") if isinstance(auth, dict) else None)
        send("welcome", message, request.sid)
        for text in replay:
            send("response", json.loads(text), request.sid)
        counters.events_sent += len(replay)
        if replay:
            slow.replayed(request.sid, len(replay))

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
        resume_point(log, auth["after"], "auth.after")
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
    serve.main(PROG, DESCRIPTION, create_app, argv)


if __name__ == "__main__":
    main()
