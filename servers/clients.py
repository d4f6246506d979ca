"""What every transport does for each client, written once: who may open a websocket endpoint,
the check of a resume point, the welcome (and the replay behind it), and the slow-client bound
with the watchdog that enforces it where a transport cannot at send time."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import gevent

from servers.events import EventLog
from servers.routes import BadRequest, parse_int

# a client with more than this unsent (queued in the server) is dropped
SLOW_CLIENT_BYTES = 8 * 2**20
WATCH_EVERY_S = 0.5


def origin_allowed(origin: str | None, environ: dict, extra: list[str]) -> bool:
    """Who may open a websocket endpoint: clients that send no Origin (the load generator, any
    non-browser), the server's own origin (same-origin pages), and the --allow-origin list."""
    if not origin:
        return True
    host = environ.get("HTTP_HOST", "")
    return origin in (f"http://{host}", f"https://{host}", *extra)


def resume_seq(value: object, name: str, *, text: bool = False) -> int:
    """The seq a client asks to resume after, as sent: text (`?after=N`, `Last-Event-ID: N`)
    with `text`, else a JSON value (Socket.IO's `auth.after`); an integer >= 0, else BadRequest
    with a one-line reason naming `name`. `resume_point` also checks it against the log."""
    if not text and (isinstance(value, bool) or not isinstance(value, int)):
        try:
            shown = json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            shown = type(value).__name__
        if len(shown) > 40:
            shown = shown[:37] + "..."
        raise BadRequest(f"{name} must be an integer, got {shown}")
    return parse_int(value, name, minimum=0)  # type: ignore[arg-type]


def resume_point(log: EventLog, value: object, name: str, *, text: bool = False) -> int:
    """A resume point (see `resume_seq`) from 0 to the last seq. One beyond the last seq is a
    client's mistake (a server restarted under it, say), never an endless wait: BadRequest."""
    after = resume_seq(value, name, text=text)
    if after > log.last_seq:
        raise BadRequest(f"{name} {after} is beyond the server's last seq {log.last_seq}")
    return after


def welcome(log: EventLog, after: int | None) -> tuple[dict, list[str]]:
    """What a client gets first: the welcome {last_seq, head, pid[, truncated]} and, for a
    resume after `after`, the JSON of the retained events since then, which must follow it with
    no yield in between (then the replay ends at the welcome's head and every later event
    follows live). `truncated` says some events after `after` are no longer retained."""
    head = log.last_seq
    if after is None:
        return {"last_seq": head, "head": head, "pid": os.getpid()}, []
    replay, truncated = log.since(after)
    message = {"last_seq": after, "head": head, "pid": os.getpid()}
    if truncated:
        message["truncated"] = True
    return message, replay


def watch_slow_clients(log: EventLog, drop_over: Callable[[int], None]) -> gevent.Greenlet:
    """Twice a second, off the fan-out path, once events exist: `drop_over(limit)`, where
    `limit` is SLOW_CLIENT_BYTES in events of the newest event's size (at least 16): the
    transport drops (and counts) each client more than `limit` events behind."""

    def watch() -> None:
        while True:
            gevent.sleep(WATCH_EVERY_S)
            size = log.newest_size()
            if size:
                drop_over(max(16, SLOW_CLIENT_BYTES // size))

    return gevent.spawn(watch)
