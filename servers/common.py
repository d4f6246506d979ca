"""What both servers share: the event log and its publisher, counters, the routes every server
answers (/healthz, /stats, /published), and a gevent WSGI server with TCP_NODELAY.

Nothing here knows about the harness: servers and harness meet only over docs/protocol.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import resource
import socket
import sys
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice

import gevent
import gevent.event
from flask import Flask, Response, jsonify, request
from gevent import pywsgi
from gevent import socket as gsocket
from werkzeug.exceptions import HTTPException

from servers.clock import now_ns, set_offset_ms
from servers.queue import Queue, QueueError, StreamBus, event_text, log_schedule, make_event

MAX_BODY_BYTES = 64 * 1024
SLOW_CLIENT_BYTES = (
    8 * 2**20
)  # a client with more than this unsent (queued in the server) is dropped
RETAINED_EVENTS = 100_000
RETAINED_BYTES = 64 * 2**20  # the retained events' JSON, at most (the newest event always stays)
MAX_RATE = 10_000.0
MAX_PAD_BYTES = 1_000_000


@dataclass
class Counters:
    """Plain counters, bumped by the server's own code paths and read by GET /stats."""

    requests: int = 0
    events_sent: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    clients: int = 0
    dropped_slow_clients: int = 0  # disconnected because their unsent backlog passed the bound
    started_ns: int = field(default_factory=time.time_ns)


class Unpublishable(ValueError):
    """A message that cannot go out as strict JSON: refused, and no seq is taken."""


MAX_T_SEND = 2**63 - 1  # nanoseconds since the epoch fit a signed 64-bit integer


def strict_json(data: object) -> str:
    """`data` as strict JSON (RFC 8259: no NaN or Infinity), compact; Unpublishable if it
    cannot be (NaN, Infinity, bytes or other non-JSON values, nesting too deep)."""
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise Unpublishable(
            "the message holds NaN or Infinity, which strict JSON (RFC 8259) cannot carry"
        ) from None
    except TypeError as exc:
        raise Unpublishable(f"the message holds a value JSON cannot carry ({exc})") from None
    except RecursionError:
        raise Unpublishable("the message is nested too deeply") from None


class Undecodable:
    """What SocketIOJSON decodes a packet to whose JSON cannot be decoded: a `message` event
    carrying this, which `chat_message` refuses (the client gets an error acknowledgement)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class SocketIOJSON:
    """The json module python-socketio decodes packets with, except that a packet whose JSON
    nests too deeply (or is not JSON) becomes a refusable `message` instead of an exception
    and a traceback in the server's log."""

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(*args, **kwargs):
        try:
            return json.loads(*args, **kwargs)
        except RecursionError:
            return ["message", Undecodable("the message is nested too deeply")]
        except ValueError:
            return ["message", Undecodable("a chat message must be JSON")]


def chat_message(message: object) -> tuple[dict, str]:
    """A client's chat message, checked: a JSON object of at most MAX_BODY_BYTES as strict
    JSON, whose `t_send`, if present, is an integer number of ns in [0, 2**63). Returns it and
    its JSON; raises Unpublishable with a one-line reason otherwise."""
    if isinstance(message, Undecodable):
        raise Unpublishable(message.reason)
    if not isinstance(message, dict):
        raise Unpublishable(f"a chat message must be a JSON object, not {type(message).__name__}")
    t_send = message.get("t_send")
    if t_send is not None and (
        not isinstance(t_send, int) or isinstance(t_send, bool) or not 0 <= t_send <= MAX_T_SEND
    ):
        raise Unpublishable("t_send must be an integer number of ns since the epoch (0 to 2**63-1)")
    data_json = strict_json(message)
    if len(data_json) > MAX_BODY_BYTES:
        raise Unpublishable(f"the message is over {MAX_BODY_BYTES} bytes")
    return message, data_json


def decode_json(text: str | bytes) -> object:
    """A received JSON text, decoded; Unpublishable (one line) if it is not JSON or nests too
    deeply for the decoder."""
    try:
        return json.loads(text)
    except ValueError:
        raise Unpublishable("a chat message must be JSON") from None
    except RecursionError:
        raise Unpublishable("the message is nested too deeply") from None


class EventLog:
    """Assigns seqs, keeps the newest events (and their JSON) and remembers when each was published.

    `publish()` is the only writer; listeners are called synchronously (the push server's
    broadcast), and waiters (long-polls, streams) are woken through a gevent Event.
    """

    def __init__(self, retained: int = RETAINED_EVENTS, retained_bytes: int = RETAINED_BYTES):
        self.last_seq = 0
        self._events: deque[tuple[int, str]] = deque()  # (seq, json), the newest retained
        self._retained, self._retained_bytes, self._bytes = retained, retained_bytes, 0
        # Publish log for GET /published: parallel arrays, never trimmed (24 bytes an event).
        self._log_seq = array("q")
        self._log_pub = array("q")
        self._log_sched = array("q")  # -1 for chat events
        self._new = gevent.event.Event()
        self.listeners: list[Callable[[dict | None], None]] = []
        self.bus = None  # set when several processes share the stream (servers/queue.py)

    def publish(
        self, kind: str, data: dict, t_sched: int | None, data_json: str | None = None
    ) -> dict:
        """Publish one event. Its data is encoded as strict JSON (RFC 8259) first (or comes
        encoded, from `chat_message`), so a seq is taken only for what can be published. With a
        bus (servers/queue.py) the bus takes the seq and the event is applied when it comes
        back from the queue, on this process as on every other."""
        if data_json is None:
            data_json = strict_json(data)
        if self.bus is not None:
            return self.bus.publish(kind, data, t_sched, data_json)
        seq, t_pub = self.last_seq + 1, now_ns()
        event = make_event(seq, t_pub, kind, data, t_sched)
        # the same text json.dumps(event, separators=(",", ":")) gives, data encoded once
        self.apply(seq, t_pub, log_schedule(event), event_text(event, data_json), event)
        return event

    def apply(
        self, seq: int, t_pub: int, log_sched: int, text: str, event: dict | None = None
    ) -> None:
        """Take in one published event (its JSON text): retain it, log it for /published, call
        the listeners (with the event, or None when it came as text only: they read
        `newest_json()`) and wake the waiters. `log_sched` is the tick's schedule, -1 for chat."""
        self.last_seq = max(self.last_seq, seq)
        self._events.append((seq, text))
        self._bytes += len(text)
        while len(self._events) > 1 and (
            len(self._events) > self._retained or self._bytes > self._retained_bytes
        ):
            self._bytes -= len(self._events.popleft()[1])
        if self._log_pub and t_pub < self._log_pub[-1]:  # from another process, a little late
            at = bisect_right(self._log_pub, t_pub)
            self._log_seq.insert(at, seq)
            self._log_pub.insert(at, t_pub)
            self._log_sched.insert(at, log_sched)
        else:
            self._log_seq.append(seq)
            self._log_pub.append(t_pub)
            self._log_sched.append(log_sched)
        for listener in self.listeners:
            listener(event)
        woken, self._new = self._new, gevent.event.Event()
        woken.set()

    def publish_chat(self, message: object) -> dict:
        """Publish a client's message (see `chat_message`); its `t_send` is the event's
        t_sched. Raises Unpublishable, before taking a seq, for anything that is not one."""
        message, data_json = chat_message(message)
        return self.publish("chat", message, message.get("t_send"), data_json)

    def newest_json(self) -> str:
        """The JSON text of the event just published (encoded once, sent to every client)."""
        return self._events[-1][1]

    def resume_point(self, value: object, name: str) -> int:
        """A resume point given as a JSON value (Socket.IO's `auth.after`): an integer from 0 to
        the last seq, else BadRequest with a one-line reason."""
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                shown = json.dumps(value)
            except (TypeError, ValueError, RecursionError):
                shown = type(value).__name__
            if len(shown) > 40:
                shown = shown[:37] + "..."
            raise BadRequest(f"{name} must be an integer, got {shown}")
        if value < 0:
            raise BadRequest(f"{name} must be >= 0, got {value}")
        self.check_after(value, name)
        return value

    def check_after(self, after: int, name: str) -> None:
        """A resume point beyond the last seq is a client's mistake (a server restarted under
        it, say), never an endless wait: 400."""
        if after > self.last_seq:
            raise BadRequest(f"{name} {after} is beyond the server's last seq {self.last_seq}")

    def truncated(self, after: int) -> bool:
        """Whether some events after `after` are no longer retained (a resume would miss them)."""
        oldest = self._events[0][0] if self._events else self.last_seq + 1
        return after + 1 < oldest and after < self.last_seq

    def since(self, after: int) -> tuple[list[str], bool]:
        """JSON of the retained events with seq > after, oldest first; True if some are gone."""
        newer = self.last_seq - after
        if newer <= 0:
            return [], False
        taken = list(islice(reversed(self._events), newer))
        taken.reverse()
        truncated = len(taken) < newer
        return [text for _, text in taken], truncated

    def wait(self, timeout: float) -> None:
        """Block this greenlet until the next publish or until timeout seconds pass."""
        self._new.wait(timeout)

    def published_between(self, since_ns: int, until_ns: int) -> dict:
        lo = bisect_left(self._log_pub, since_ns)
        hi = bisect_right(self._log_pub, until_ns)
        lags = [
            (self._log_pub[i] - self._log_sched[i]) // 1000
            for i in range(lo, hi)
            if self._log_sched[i] >= 0
        ]
        return {
            "first_seq": self._log_seq[lo] if hi > lo else None,
            "last_seq": self._log_seq[hi - 1] if hi > lo else None,
            "count": max(0, hi - lo),
            "publisher_lag_us": lags,
        }


def run_publisher(log: EventLog, rate: float, pad: str, queue: Queue | None = None) -> None:
    """Publish `rate` ticks a second on an absolute schedule (t0 + k/rate): late ticks don't shift
    the ones after them, so a stalled server shows up as publisher lag, not as a slower rate.
    With a queue, only while this process holds the publisher's lease (one publisher for all)."""
    if rate <= 0:
        return
    dies_after = injected_publisher_fault()
    period_ns = int(1e9 / rate)
    data = {"pad": pad} if pad else {}
    data_json = strict_json(data)  # encoded once, not per tick
    t0 = now_ns() + period_ns
    k = 0
    while True:
        if queue is not None and not queue.leading:  # another process publishes: wait, restart
            gevent.sleep(0.1)
            t0, k = now_ns() + period_ns, 0
            continue
        t_sched = t0 + k * period_ns
        delay = (t_sched - now_ns()) / 1e9
        # behind schedule, still yield: requests (/healthz, /stats) and SIGTERM go on between ticks
        gevent.sleep(max(delay, 0))
        log.publish("tick", data, t_sched, data_json)
        k += 1
        if k == dies_after:
            raise RuntimeError(
                f"{FAULT_ENV}={dies_after}: the publisher dies, as a broken one would"
            )


FAULT_ENV = "PUSHPULL_FAULT_PUBLISHER_DIES_AFTER"


def injected_publisher_fault() -> int | None:
    """For the harness's own tests only (never set by pushpull): with PUSHPULL_FAULT_PUBLISHER_
    DIES_AFTER=N in its environment, a server's publisher raises after N ticks, as a publisher
    killed by a fan-out bug does, so a test can check that the harness notices."""
    text = os.environ.get(FAULT_ENV)
    if not text:
        return None
    try:
        return max(1, int(text))
    except ValueError:
        sys.stderr.write(f"warning: {FAULT_ENV}={text!r} is not a tick count; ignored\n")
        return None


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def json_error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def add_common_routes(
    app: Flask, name: str, log: EventLog, counters: Counters, queue: Queue | None = None
) -> None:
    """/healthz, /stats and /published, plus JSON errors and a body-size bound for the app."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    pid = os.getpid()

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return json_error(exc.code or 500, exc.description or exc.name)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", server=name, pid=pid, last_seq=log.last_seq)

    @app.get("/stats")
    def stats() -> Response:
        cpu = os.times()
        return jsonify(
            server=name,
            pid=pid,
            uptime_s=(time.time_ns() - counters.started_ns) / 1e9,
            published=log.last_seq,
            last_seq=log.last_seq,
            clients=counters.clients,
            requests=counters.requests,
            events_sent=counters.events_sent,
            cpu_user_s=cpu.user,
            cpu_system_s=cpu.system,
            rss_bytes=rss_bytes(),
            bytes_read=counters.bytes_read,
            bytes_written=counters.bytes_written,
            dropped_slow_clients=counters.dropped_slow_clients,
            rlimit_nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            queue=queue.info() if queue is not None else None,
        )

    @app.get("/time")
    def server_time() -> Response:
        return jsonify(t_ns=now_ns())

    @app.get("/published")
    def published() -> Response:
        since = parse_int_arg("since", default=0, minimum=0)
        until = parse_int_arg("until", default=2**63 - 1, minimum=0)
        return jsonify(log.published_between(since, until))


class BadRequest(HTTPException):
    code = 400


def parse_int_arg(name: str, default: int | None, minimum: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise BadRequest(f"{name} must be >= {minimum}, got {value}")
    return value


def parse_float_arg(name: str, default: float, minimum: float, maximum: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be between {minimum:g} and {maximum:g}, got {raw}")
    return value


def parse_json_object() -> dict:
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def counting(app: Callable, counters: Counters) -> Callable:
    """WSGI middleware counting every HTTP request (Engine.IO's polls and upgrades included)."""

    def wsgi(environ, start_response):
        counters.requests += 1
        return app(environ, start_response)

    return wsgi


def counting_socket_class(counters: Counters) -> type:
    """A gevent socket that adds what it sends and receives to `counters` (headers and WebSocket
    framing included); dup() keeps the class, so simple-websocket's duplicate counts too."""

    class CountingSocket(gsocket.socket):
        __slots__ = ()

        def send(self, data, flags=0, **kwargs):  # sendall() goes through send()
            sent = super().send(data, flags, **kwargs)
            counters.bytes_written += sent
            return sent

        def recv(self, *args):
            data = super().recv(*args)
            counters.bytes_read += len(data)
            return data

        def recv_into(self, *args):
            received = super().recv_into(*args)
            counters.bytes_read += received
            return received

    return CountingSocket


class ClosingUpgradeHandler(pywsgi.WSGIHandler):
    """pywsgi's handler, except that a connection upgraded to WebSocket ends when its handler
    returns. simple-websocket writes the 101 itself, so pywsgi never learns of the upgrade and,
    as after any HTTP/1.1 request, waits on the socket for the next one: the client, having sent
    its Close frame, then waits for a TCP close that never comes (python-socketio's client gives
    up after 3 s). RFC 6455 section 5.5.1: after a Close frame each way, close the TCP
    connection; section 7.1.1: the server first. So once the handler returned (its Close frame
    sent), the write side is shut (FIN), what the client still sends (its Close frame) is read
    through the counted socket until it closes too, at most CLOSE_WAIT_S."""

    CLOSE_WAIT_S = 2.0

    def handle_one_response(self):
        try:
            super().handle_one_response()
        finally:
            if self.environ.get("HTTP_UPGRADE", "").lower() == "websocket":
                self.close_connection = True
                self.finish_websocket()

    def finish_websocket(self) -> None:
        sock = self.socket
        deadline = time.monotonic() + self.CLOSE_WAIT_S
        try:
            sock.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                if not sock.recv(4096):
                    break
        except OSError:
            pass  # the client is gone already, or took too long: the connection closes now


class NoDelayWSGIServer(pywsgi.WSGIServer):
    """pywsgi writes headers and body in two sends; with Nagle on, each response then waits ~40 ms
    for the client's delayed ACK. Setting TCP_NODELAY on every accepted socket removes that.
    Accepted sockets are re-wrapped so the bytes crossing them are counted, and registered while
    their handler runs (each in its own greenlet), so that `POST /admin/drop` (with `admin`) can
    cut them all at once, whatever transport they carry."""

    handler_class = ClosingUpgradeHandler

    def __init__(self, *args, counters: Counters, admin: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._socket_class = counting_socket_class(counters)
        self._live: dict[gevent.Greenlet, socket.socket] = {}  # handler greenlet -> its socket
        if admin:
            self.application = admin_routes(self.application, self.drop_connections, counters)

    def handle(self, sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        counted = self._socket_class(fileno=sock.detach())
        handler = gevent.getcurrent()
        self._live[handler] = counted
        try:
            return super().handle(counted, address)
        finally:
            self._live.pop(handler, None)

    def drop_connections(self) -> int:
        """Shut down every accepted connection but the calling handler's own, at once (no yield
        in between); returns how many. Each handler then sees its connection end and cleans up."""
        current = gevent.getcurrent()
        dropped = [sock for handler, sock in self._live.items() if handler is not current]
        self._live = {handler: sock for handler, sock in self._live.items() if handler is current}
        for sock in dropped:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(dropped)


def admin_routes(app: Callable, drop_connections: Callable[[], int], counters: Counters):
    """WSGI middleware for benchmarks (`--admin`): `POST /admin/drop` shuts down every client
    connection but its own and answers `{"dropped": N}`; every other request goes to `app`."""

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") != "/admin/drop":
            return app(environ, start_response)
        counters.requests += 1
        if environ.get("REQUEST_METHOD") != "POST":
            status, headers = "405 METHOD NOT ALLOWED", [("Allow", "POST")]
            body = {"error": "POST /admin/drop drops every client connection"}
        else:
            status, headers, body = "200 OK", [], {"dropped": drop_connections()}
        data = json.dumps(body).encode()
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response(status, headers)
        return [data]

    return wsgi


class QuietErrorLog:
    """pywsgi's error log without the one harmless line every clean WebSocket close produces."""

    def write(self, text: str) -> None:
        if "Invalid HTTP method" not in text:
            sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def raise_nofile_limit() -> int:
    """simple-websocket holds two descriptors per client: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def server_arguments(prog: str, description: str) -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=5000, help="TCP port, 0 for a free one (default 5000)"
    )
    parser.add_argument(
        "--rate",
        type=rate_value,
        default=2.0,
        help="ticks published per second, 0 for none (default 2)",
    )
    parser.add_argument(
        "--payload-bytes",
        type=pad_value,
        default=0,
        help="pad every tick with this many bytes of data (default 0)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin (e.g. http://localhost:8000) besides the server's own that may "
        "open its Socket.IO and WebSocket endpoints; repeat for more",
    )
    parser.add_argument(
        "--message-queue",
        metavar="URL",
        help="serve one event stream with other processes through Redis, e.g. "
        "redis://127.0.0.1:6379/0 (start them alike, on other ports; one publishes the ticks)",
    )
    parser.add_argument(
        "--queue-channel",
        default="pushpull",
        type=channel_name,
        help="Redis key prefix the processes of one stream share (default pushpull)",
    )
    parser.add_argument(
        "--retain-events",
        type=retain_value,
        default=RETAINED_EVENTS,
        help=f"newest events kept for resumes and polls (default {RETAINED_EVENTS})",
    )
    parser.add_argument(
        "--retain-bytes",
        type=retain_bytes_value,
        default=RETAINED_BYTES,
        help=f"and at most this many bytes of their JSON (default {RETAINED_BYTES})",
    )
    parser.add_argument(
        "--clock-offset-ms",
        type=clock_offset_value,
        default=0.0,
        metavar="MS",
        help="for tests: run this server's clock (t_pub, t_sched, GET /time) MS milliseconds "
        "ahead of the machine's (negative: behind), as a server on another machine could be",
    )
    parser.add_argument(
        "--admin",
        action="store_true",
        help="for benchmarks: serve POST /admin/drop, which drops every client connection at once",
    )
    return parser


def origin_allowed(origin: str | None, environ: dict, extra: list[str]) -> bool:
    """Who may open a websocket endpoint: clients that send no Origin (the load generator, any
    non-browser), the server's own origin (same-origin pages), and the --allow-origin list."""
    if not origin:
        return True
    host = environ.get("HTTP_HOST", "")
    return origin in (f"http://{host}", f"https://{host}", *extra)


def warn_if_exposed(prog: str, host: str) -> None:
    """One line when the server binds an address other machines can reach."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        sys.stderr.write(
            f"{prog}: warning: --host {host} is reachable from other machines and its endpoints "
            "have no authentication\n"
        )


def channel_name(text: str) -> str:
    if not text or len(text) > 200 or not all(c.isalnum() or c in "-_.:" for c in text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a channel name (1 to 200 letters, digits, '-', '_', '.', ':')"
        )
    return text


def retain_bytes_value(text: str) -> int:
    value = _int(text, "a byte count")
    if not 1 <= value <= 2**40:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (1 to 2**40 bytes)")
    return value


def retain_value(text: str) -> int:
    value = _int(text, "an event count")
    if not 1 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (1 to 10000000 events)")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def port_number(text: str) -> int:
    value = _int(text, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def rate_value(text: str, maximum: float = MAX_RATE) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (events per second)") from None
    if not 0 <= value <= maximum:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (0 to {maximum:g} events/s)")
    return value


def clock_offset_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (milliseconds)") from None
    if not -3_600_000 <= value <= 3_600_000:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (-3600000 to 3600000 ms)")
    return value


def pad_value(text: str) -> int:
    value = _int(text, "a byte count")
    if not 0 <= value <= MAX_PAD_BYTES:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (0 to {MAX_PAD_BYTES} bytes)")
    return value


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def serve(
    prog: str,
    args: argparse.Namespace,
    app: Callable,
    log: EventLog,
    counters: Counters,
    queue: Queue | None = None,
):
    """Bind, announce, publish and serve until SIGTERM/SIGINT; a busy port is one line, exit 2."""
    import signal

    host, port = args.host, args.port
    set_offset_ms(getattr(args, "clock_offset_ms", 0.0))
    warn_if_exposed(prog, host)
    nofile = raise_nofile_limit()
    try:
        listener = gsocket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(4096)
    except OSError as exc:
        reason = "address already in use" if exc.errno == 98 else exc.strerror
        sys.stderr.write(f"{prog}: error: --host {host} --port {port}: {reason}\n")
        raise SystemExit(2) from None
    server = NoDelayWSGIServer(
        listener,
        app,
        log=None,
        error_log=QuietErrorLog(),
        environ={"SERVER_NAME": host},
        counters=counters,
        admin=getattr(args, "admin", False),
    )
    bound_port = listener.getsockname()[1]
    background = []
    if queue is not None:
        background.append(gevent.spawn(queue.hold_lease))
        if isinstance(log.bus, StreamBus):
            background += log.bus.start()
    publisher = gevent.spawn(run_publisher, log, args.rate, "x" * args.payload_bytes, queue)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    gevent.signal_handler(signal.SIGINT, server.stop)
    gevent.signal_handler(signal.SIGHUP, server.stop)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address is bracketed in a URL
    announce = {"listening": f"http://{shown}:{bound_port}", "pid": os.getpid(), "nofile": nofile}
    print(json.dumps(announce), flush=True)
    try:
        server.serve_forever()
    finally:
        publisher.kill()
        gevent.killall(background)


def main_of(prog: str, description: str, create_app: Callable, argv: list[str] | None) -> None:
    """`python -m servers.<name>`: parse the common arguments, build the app, serve."""
    args = server_arguments(prog, description).parse_args(argv)
    log, counters = EventLog(args.retain_events, args.retain_bytes), Counters()
    queue = None
    if args.message_queue:
        try:
            queue = Queue(args.message_queue, args.queue_channel)
        except QueueError as exc:
            sys.stderr.write(f"{prog}: error: --message-queue: {exc}\n")
            raise SystemExit(2) from None
    app = create_app(log, counters, queue)
    if queue is not None and log.bus is None:  # the app fans out locally: share a Redis Stream
        log.bus = StreamBus(queue, log, args.retain_events)
    app.config["ALLOWED_ORIGINS"] = list(args.allow_origin)
    serve(prog, args, app, log, counters, queue)
