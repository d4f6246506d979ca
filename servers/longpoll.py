"""The polling server: plain Flask REST on gevent.

`GET /events?after=SEQ&timeout=S` holds until events newer than SEQ exist or S seconds pass
(long polling); `timeout=0` answers at once (short polling); `GET /stream` sends the same events as
Server-Sent Events; `POST /messages` publishes a chat message. See docs/protocol.md.

    python -m servers.longpoll --host 127.0.0.1 --port 5002 --rate 2
"""

from __future__ import annotations

import servers.patching  # noqa: F401 - first: gevent monkey-patching with --message-queue

# isort: split
import contextlib
import json
import os
import socket

import gevent
from flask import Flask, Response, request

from servers.common import (
    SLOW_CLIENT_BYTES,
    BadRequest,
    Counters,
    EventLog,
    Unpublishable,
    add_common_routes,
    counting,
    main_of,
    parse_float_arg,
    parse_int_arg,
    parse_json_object,
)
from servers.queue import Queue

NAME = "longpoll"
MAX_POLL_TIMEOUT_S = 60.0
SSE_KEEPALIVE_S = 15.0


def create_app(log: EventLog, counters: Counters, queue: Queue | None = None) -> Flask:
    app = Flask(__name__)
    add_common_routes(app, NAME, log, counters, queue)
    pid = os.getpid()

    def events_response(events: list[str], truncated: bool) -> Response:
        # Events are kept as JSON text, so a response is a join, not a re-encode per poller.
        counters.events_sent += len(events)
        body = '{"events":[' + ",".join(events) + '],"last_seq":' + str(log.last_seq)
        body += ',"truncated":true}' if truncated else "}"
        return Response(body, mimetype="application/json")

    @app.get("/events")
    def events() -> Response:
        after = parse_int_arg("after", default=None, minimum=0)
        timeout = parse_float_arg("timeout", default=0.0, minimum=0.0, maximum=MAX_POLL_TIMEOUT_S)
        if after is None:
            return events_response([], False)
        log.check_after(after, "after")
        found, truncated = log.since(after)
        if not found and timeout > 0:
            counters.clients += 1
            try:
                log.wait(timeout)
            finally:
                counters.clients -= 1
            found, truncated = log.since(after)
        return events_response(at_most(found, SLOW_CLIENT_BYTES), truncated)

    @app.post("/messages")
    def messages() -> tuple[Response, int]:
        message = parse_json_object()
        try:
            event = log.publish_chat(message)
        except Unpublishable as exc:
            raise BadRequest(str(exc)) from None
        return Response(json.dumps({"seq": event["seq"]}), mimetype="application/json"), 201

    @app.get("/stream")
    def stream() -> Response:
        resume = request.headers.get("Last-Event-ID")
        if resume is None:
            cursor = log.last_seq
        else:
            try:
                cursor = int(resume)
            except ValueError:
                raise BadRequest(f"Last-Event-ID must be an integer, got {resume!r}") from None
            if cursor < 0:
                raise BadRequest(f"Last-Event-ID must be >= 0, got {cursor}")
            log.check_after(cursor, "Last-Event-ID")
        return Response(
            sse_messages(cursor, request_socket(request.environ)),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    streams: dict[int, list] = {}  # id -> [last seq written to the client, its socket]

    def sse_messages(cursor: int, sock):
        counters.clients += 1
        state = [cursor, sock]
        streams[id(state)] = state
        try:
            welcome = {"last_seq": cursor, "head": log.last_seq, "pid": pid}
            if log.truncated(cursor):  # a resume asking for events no longer retained
                welcome["truncated"] = True
            welcome = json.dumps(welcome)
            yield f"event: welcome\ndata: {welcome}\n\n"
            while True:
                found, _ = log.since(cursor)
                if not found:
                    log.wait(SSE_KEEPALIVE_S)
                    found, _ = log.since(cursor)
                    if not found:
                        yield ": keepalive\n\n"
                        continue
                cursor = log.last_seq
                counters.events_sent += len(found)
                yield "".join(f"id: {seq_of(text)}\ndata: {text}\n\n" for text in found)
                state[0] = cursor  # the write returned: the client took it
        finally:
            streams.pop(id(state), None)
            counters.clients -= 1

    def drop_slow_streams() -> None:
        """Twice a second: a stream whose client has not taken SLOW_CLIENT_BYTES of events
        (its write is blocked) is cut and counted; its greenlet then ends."""
        while True:
            gevent.sleep(0.5)
            if not log.last_seq:
                continue
            limit = max(16, SLOW_CLIENT_BYTES // len(log.newest_json()))
            for key, (written, sock) in list(streams.items()):
                if sock is not None and log.last_seq - written > limit:
                    streams.pop(key, None)
                    counters.dropped_slow_clients += 1
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    gevent.spawn(drop_slow_streams)

    app.wsgi_app = counting(app.wsgi_app, counters)  # type: ignore[method-assign]
    return app


def at_most(texts: list[str], limit: int) -> list[str]:
    """The oldest of `texts` that fit in `limit` bytes (at least one): an answer never holds
    more than a slow client may have queued; the next poll gets the rest."""
    total = 0
    for count, text in enumerate(texts):
        total += len(text)
        if total > limit and count:
            return texts[:count]
    return texts


def request_socket(environ: dict):
    """The raw socket under a gevent.pywsgi request (as simple-websocket finds it), or None."""
    stream = environ.get("wsgi.input")
    if stream is not None and not hasattr(stream, "raw") and hasattr(stream, "rfile"):
        stream = stream.rfile
    raw = getattr(getattr(stream, "raw", None), "_sock", None)
    return getattr(raw, "_sock", raw)


def seq_of(event_json: str) -> int:
    """The seq of an event's JSON text, which always starts with '{"seq":N,'."""
    return int(event_json[7 : event_json.index(",")])


def main(argv: list[str] | None = None) -> None:
    main_of(
        "servers.longpoll",
        "Flask REST polling server (long-poll, short-poll and SSE).",
        create_app,
        argv,
    )


if __name__ == "__main__":
    main()
