"""Blocking protocol clients, one per way of speaking docs/protocol.md: the harness's verify step
(pushpull/harness/verify.py) and the protocol test (tests/test_protocol.py) both use these, so the
protocol is checked by one implementation. They are plain and slow on purpose (the load
generator has its own lean clients): python-socketio's SimpleClient, simple-websocket's Client,
the standard library's http.client with pushpull's one SSE parser.

    probe = SSEProbe("http://127.0.0.1:5002")   # connected; probe.baseline is the welcome's last_seq
    seq = probe.send({"text": "hi", "t_send": time.time_ns()})   # None where the wire has no ack
    events = probe.receive(5)                   # the next 5 events, in order
    probe.close()

Every failure is a `ProbeError` (or OSError/ValueError from the socket) with a one-line reason.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

from pushpull.core import tls
from pushpull.core.sse import SSEParser
from pushpull.harness.procs import request_json as call  # (status, JSON body), error statuses too


class ProbeError(Exception):
    """The server did not answer as docs/protocol.md says."""


def post_message(url: str, message: dict) -> int:
    status, body = call(url + "/messages", "POST", message)
    if status != 201 or not isinstance(body.get("seq"), int):
        raise ProbeError(f"POST /messages: expected 201 {{seq: N}}, got {status} {body}")
    return body["seq"]


def welcome_baseline(welcome: object, where: str) -> int:
    if not isinstance(welcome, dict) or not isinstance(welcome.get("last_seq"), int):
        raise ProbeError(f"{where}: expected a welcome with an integer last_seq, got {welcome!r}")
    return welcome["last_seq"]


class Probe:
    """What every probe offers; `checks(url)` are extra checks of the transport's own routes."""

    baseline: int
    welcome: dict

    @staticmethod
    def checks(url: str) -> list[str]:
        return []

    def send(self, message: dict) -> int | None:
        raise NotImplementedError

    def receive(self, count: int, timeout: float = 5.0) -> list[dict]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SocketIOProbe(Probe):
    """python-socketio's SimpleClient on one Engine.IO transport (websocket or polling);
    `auth` goes with the connect (`{"after": SEQ}` resumes after SEQ)."""

    def __init__(self, url: str, engineio_transport: str, auth: dict | None = None) -> None:
        import socketio

        self.client = socketio.SimpleClient(**tls.socketio_options(url))
        try:
            self.client.connect(url, transports=[engineio_transport], wait_timeout=10, auth=auth)
            name, welcome = self.client.receive(timeout=5)
        except Exception:
            self.client.disconnect()
            raise
        if name != "welcome":
            self.close()
            raise ProbeError(f"socket.io: expected `welcome` first, got {name!r}")
        self.welcome = welcome
        self.baseline = welcome_baseline(welcome, "socket.io welcome")

    def send(self, message: dict) -> int | None:
        ack = self.client.call("message", message, timeout=5)
        if not isinstance(ack, dict) or not isinstance(ack.get("seq"), int):
            raise ProbeError(
                f"socket.io: `message` acknowledgement should be {{seq: N}}, got {ack}"
            )
        return ack["seq"]

    def receive(self, count: int, timeout: float = 5.0) -> list[dict]:
        events = []
        while len(events) < count:
            name, event = self.client.receive(timeout=timeout)
            if name != "response":
                raise ProbeError(f"socket.io: deliveries arrive as `response`, got {name!r}")
            events.append(event)
        return events

    def close(self) -> None:
        self.client.disconnect()


def websocket_client_class():
    """simple-websocket's Client, minus one race: its handshake takes only the first event of
    its first read (the 101), so a frame the server sent right behind the 101 in the same TCP
    segment (the welcome) stayed in wsproto's buffer until more bytes came; with no ticks
    (the chat scenario) the probe waited 5 s for a welcome that had arrived (1 connect in ~12
    here). The frames of that read are taken in at once. And one more: its close() closes the
    socket under its reader thread, still in recv(); over TLS that thread's SSL object then read
    the next connection's handshake off the reused descriptor (WRONG_VERSION_NUMBER). close()
    here waits for the reader to see the server's Close and end first."""
    import simple_websocket

    class Client(simple_websocket.Client):
        def handshake(self) -> None:
            super().handshake()
            self.connected = self._handle_events()

        def close(self, reason=None, message=None) -> None:
            simple_websocket.ws.Base.close(self, reason, message)  # the Close frame
            self.thread.join(2.0)
            self.sock.close()

    return Client


class WebSocketProbe(Probe):
    """simple-websocket's Client on `GET /ws`: a welcome frame, then one JSON text frame per
    event; a text frame sent is a chat message (no acknowledgement: its seq arrives with it)."""

    PATH = "/ws"

    def __init__(self, url: str, query: str = "") -> None:
        parts = urlsplit(url)
        scheme, context = ("wss", tls.context()) if tls.secure(url) else ("ws", None)
        self.ws = websocket_client_class().connect(
            f"{scheme}://{parts.netloc}{self.PATH}{query}", ssl_context=context
        )
        first = self._frame(5.0)
        if first.get("type") != "welcome":
            self.close()
            raise ProbeError(f"GET {self.PATH}: expected a welcome frame first, got {first}")
        self.welcome = first
        self.baseline = welcome_baseline(first, f"GET {self.PATH} welcome")

    def _frame(self, timeout: float) -> dict:
        text = self.ws.receive(timeout=timeout)
        if text is None:
            raise ProbeError(f"GET {self.PATH}: nothing arrived within {timeout:g} s")
        if not isinstance(text, str):
            raise ProbeError(f"GET {self.PATH}: expected text frames, got {type(text).__name__}")
        return json.loads(text)

    def send(self, message: dict) -> int | None:
        self.ws.send(json.dumps(message))
        return None

    def receive(self, count: int, timeout: float = 5.0) -> list[dict]:
        events = []
        while len(events) < count:
            frame = self._frame(timeout)
            if "seq" not in frame:
                raise ProbeError(f"GET {self.PATH}: expected an event frame, got {frame}")
            events.append(frame)
        return events

    def close(self) -> None:
        self.ws.close()


class SSEProbe(Probe):
    """`GET /stream` read with http.client and pushpull's SSE parser; chat via POST /messages.
    `deliveries`: the SSE event names that carry the protocol's events (unnamed: `message`)."""

    def __init__(
        self, url: str, last_event_id: int | None = None, deliveries: tuple[str, ...] = ("message",)
    ) -> None:
        self.url, self.deliveries = url, tuple(deliveries)
        self.connection = tls.http_connection(url, timeout=5)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.connection.request("GET", "/stream", headers=headers)
        self.response = self.connection.getresponse()
        kind = self.response.getheader("Content-Type", "")
        if self.response.status != 200 or not kind.startswith("text/event-stream"):
            body = self.response.read(200)
            self.close()
            raise ProbeError(
                f"GET /stream: expected 200 text/event-stream, got {self.response.status} {kind} {body!r}"
            )
        self.parser = SSEParser()
        self.pending: list[tuple[str, str, str | None]] = []
        name, data, _ = self._message()
        if name != "welcome":
            self.close()
            raise ProbeError(f"GET /stream: expected a `welcome` first, got {name} {data}")
        self.welcome = json.loads(data)
        self.baseline = welcome_baseline(self.welcome, "GET /stream welcome")

    def _message(self) -> tuple[str, str, str | None]:
        while not self.pending:
            line = self.response.readline()
            if not line:
                raise ProbeError("GET /stream: the server ended the stream")
            self.pending += self.parser.feed(line.decode())
        return self.pending.pop(0)

    def send(self, message: dict) -> int | None:
        return post_message(self.url, message)

    def receive(self, count: int, timeout: float = 5.0) -> list[dict]:
        self.connection.sock.settimeout(timeout)
        events = []
        while len(events) < count:
            name, data, event_id = self._message()
            if name not in self.deliveries:
                raise ProbeError(
                    f"GET /stream: deliveries are SSE events named {' or '.join(self.deliveries)}"
                    f" (`message`: unnamed), got {name!r}"
                )
            event = json.loads(data)
            if event_id != str(event.get("seq")):
                raise ProbeError(f"GET /stream: id {event_id!r} is not the event's seq {event}")
            events.append(event)
        return events

    def close(self) -> None:
        self.response.close()  # the response holds the socket: closing the connection alone
        self.connection.close()  # left it open


class PollProbe(Probe):
    """`GET /events`: a baseline, then polls held `hold_s` seconds (0: short polls every 50 ms)."""

    def __init__(self, url: str, hold_s: float = 5.0) -> None:
        self.url, self.hold_s = url, hold_s
        status, body = call(url + "/events")
        if status != 200 or body.get("events") != [] or not isinstance(body.get("last_seq"), int):
            raise ProbeError(
                f"GET /events: expected 200 {{events: [], last_seq: N}}, got {status} {body}"
            )
        self.welcome = body
        self.baseline = self.cursor = body["last_seq"]
        self.pending: list[dict] = []  # events a poll returned beyond what was asked for

    @staticmethod
    def checks(url: str) -> list[str]:
        status, body = call(url + "/events?after=abc")
        if status != 400 or "error" not in body:
            return [f"GET /events?after=abc: expected 400 with a JSON error, got {status} {body}"]
        return []

    def send(self, message: dict) -> int | None:
        return post_message(self.url, message)

    def receive(self, count: int, timeout: float = 5.0) -> list[dict]:
        events, self.pending = self.pending, []
        deadline = time.monotonic() + timeout
        while len(events) < count:
            if time.monotonic() > deadline:
                raise ProbeError(
                    f"GET /events: {len(events)} of {count} events within {timeout:g} s"
                )
            status, body = call(
                f"{self.url}/events?after={self.cursor}&timeout={self.hold_s:g}",
                timeout=self.hold_s + 5,
            )
            if status != 200 or not isinstance(body.get("last_seq"), int):
                raise ProbeError(f"GET /events: expected 200 with last_seq, got {status} {body}")
            events += body["events"]
            if body["events"]:
                self.cursor = body["events"][-1]["seq"]
            elif self.hold_s == 0:
                time.sleep(0.05)
        events, self.pending = events[:count], events[count:]
        return events

    def close(self) -> None:
        pass
