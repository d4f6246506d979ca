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
import socket
from collections.abc import Iterable, Iterator
from functools import partial

from flask import Flask, Response, request

from servers import serve
from servers.clients import SLOW_CLIENT_BYTES, resume_point, resume_seq, watch_slow_clients, welcome
from servers.events import EventLog
from servers.messages import Unpublishable
from servers.queue import Queue
from servers.routes import BadRequest, parse_float_arg, parse_json_object, server_app
from servers.stats import Counters

NAME = "longpoll"
PROG = "servers.longpoll"
DESCRIPTION = "Flask REST polling server (long-poll, short-poll and SSE)."
MAX_POLL_TIMEOUT_S = 60.0
SSE_KEEPALIVE_S = 15.0


def create_app(
    log: EventLog, counters: Counters, queue: Queue | None = None, origins: Iterable[str] = ()
) -> Flask:
    streams = Streams(log, counters)
    poll_routes = partial(add_poll_routes, log=log, counters=counters)
    stream_route = partial(add_stream_route, streams=streams)
    return server_app(__name__, NAME, log, counters, queue, origins, poll_routes, stream_route)


def add_poll_routes(app: Flask, log: EventLog, counters: Counters) -> None:
    """GET /events (long and short polls) and POST /messages."""

    def events_response(events: list[str], truncated: bool) -> Response:
        # Events are kept as JSON text, so a response is a join, not a re-encode per poller.
        counters.events_sent += len(events)
        body = '{"events":[' + ",".join(events) + '],"last_seq":' + str(log.last_seq)
        body += ',"truncated":true}' if truncated else "}"
        return Response(body, mimetype="application/json")

    @app.get("/events")
    def events() -> Response:
        after = request.args.get("after")
        if after is not None:  # its form is checked before the timeout, its value after
            after = resume_seq(after, "after", text=True)
        timeout = parse_float_arg("timeout", default=0.0, minimum=0.0, maximum=MAX_POLL_TIMEOUT_S)
        if after is None:
            return events_response([], False)
        resume_point(log, after, "after")
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


def add_stream_route(app: Flask, streams: Streams) -> None:
    """GET /stream: Server-Sent Events, resumed after a `Last-Event-ID`."""

    @app.get("/stream")
    def stream() -> Response:
        resume = request.headers.get("Last-Event-ID")
        if resume is None:
            cursor = streams.log.last_seq
        else:
            cursor = resume_point(streams.log, resume, "Last-Event-ID", text=True)
        return Response(
            streams.messages(cursor, request_socket(request.environ)),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


class Streams:
    """The open SSE streams: each one's messages, and the watchdog that cuts (and counts) a
    stream whose client has not taken SLOW_CLIENT_BYTES of events (its write is blocked)."""

    def __init__(self, log: EventLog, counters: Counters) -> None:
        self.log, self.counters = log, counters
        self.open: dict[int, list] = {}  # id -> [last seq written to the client, its socket]
        watch_slow_clients(log, self.drop_over)

    def messages(self, cursor: int, sock) -> Iterator[str]:
        """The welcome, the events after `cursor` (a resume's replay first), then every later
        event as it is published, with a keep-alive comment every SSE_KEEPALIVE_S of quiet."""
        log, counters, frame = self.log, self.counters, self.frame
        counters.clients += 1
        state = [cursor, sock]
        self.open[id(state)] = state
        try:
            message, found = welcome(log, cursor)
            cursor = message["head"]
            yield f"event: welcome\ndata: {json.dumps(message)}\n\n"
            while True:
                if found:
                    counters.events_sent += len(found)
                    yield "".join(map(frame, found))
                    state[0] = cursor  # the write returned: the client took it
                found, _ = log.since(cursor)
                if not found:
                    log.wait(SSE_KEEPALIVE_S)
                    found, _ = log.since(cursor)
                    if not found:
                        yield ": keepalive\n\n"
                        continue
                cursor = log.last_seq
        finally:
            self.open.pop(id(state), None)
            counters.clients -= 1

    def frame(self, text: str) -> str:
        """One event as an SSE message: unnamed, its seq as the id, its JSON as the data."""
        return f"id: {seq_of(text)}\ndata: {text}\n\n"

    def drop_over(self, limit: int) -> None:
        """Cut every stream more than `limit` events behind; its greenlet then ends."""
        for key, (written, sock) in list(self.open.items()):
            if sock is not None and self.log.last_seq - written > limit:
                self.open.pop(key, None)
                self.counters.dropped_slow_clients += 1
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


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
    serve.main(PROG, DESCRIPTION, create_app, argv)


if __name__ == "__main__":
    main()
