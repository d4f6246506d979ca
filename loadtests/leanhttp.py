"""Lean HTTP clients for the polling and streaming load generators: keep-alive HTTP/1.1 and SSE,
blocking (`LeanHTTP`, for baselines and chat POSTs) or read by the process's Reactor
(`ReactorHTTP` for long and short polls, `ReactorSSE` for streams).

Locust's FastHttpUser costs about 316 us of load-generator CPU per long-poll delivery here (its
session, user agent, header copies and per-request stats), about as much as the server spends
answering: at a few hundred clients the load generator becomes the bottleneck. This client keeps
one connection, writes a prebuilt request and parses the answer with geventhttpclient's C parser
(the one FastHttpUser uses underneath), on the calling greenlet.

    http = LeanHTTP("http://127.0.0.1:5002")
    status, body, t_recv_ns = http.request("GET", "/events?after=3&timeout=20")
"""

from __future__ import annotations

import codecs
import json
import time
from urllib.parse import urlsplit

import gevent.event
from gevent import socket as gsocket
from geventhttpclient.response import HTTPResponse

from loadtests import sources
from loadtests.ws import default_port, open_socket
from pushpull.core import tls
from pushpull.core.events import parse_event
from pushpull.core.sse import SSEParser

RECV_BYTES = 65536


class Response(HTTPResponse):
    """geventhttpclient's parser, fed by us; the body is what it collected."""

    def body(self) -> bytes:
        return bytes(self._body_buffer)

    def take_body(self) -> bytes:
        """The body bytes parsed so far, removed from the buffer (for streamed responses)."""
        body = bytes(self._body_buffer)
        del self._body_buffer[:]
        return body


class LeanHTTP:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.secure = tls.secure(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or default_port(self.secure)
        self.source = sources.current()  # the client's address, taken where it started
        self.timeout = timeout
        self.sock: gsocket.socket | None = None
        shown = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 in brackets
        self._host_header = f"Host: {shown}:{self.port}\r\n"

    def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> tuple[int, bytes, int]:
        """(status, body, time the last byte arrived in ns). Reconnects once if a kept-alive
        connection turns out to be closed before any answer came."""
        headers = {}
        if body or method == "POST":
            headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        request = self.head(method, path, headers) + body
        for attempt in (1, 2):
            fresh = self.sock is None
            if fresh:
                self.connect()
            try:
                return self._exchange(request, method)
            except ConnectionError:
                self.close()
                if fresh or attempt == 2 or method != "GET":  # never resend a POST
                    raise
        raise AssertionError("unreachable")

    def head(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        """A request's head: request line, Host and `headers`, and the blank line."""
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return f"{method} {path} HTTP/1.1\r\n{self._host_header}{lines}\r\n".encode()

    def connect(self) -> None:
        self.sock = open_socket(self.host, self.port, self.timeout, self.secure, self.source)
        self.sock.settimeout(None)  # a gevent Timeout per send and recv cost ~4% of the client

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _exchange(self, request: bytes, method: str) -> tuple[int, bytes, int]:
        self.sock.sendall(request)
        response = Response(method)
        while True:
            data = self.sock.recv(RECV_BYTES)
            t_recv = time.time_ns()
            if not data:
                raise ConnectionError("the server closed the connection")
            response.feed(data)
            if response.message_complete:
                break
        if response.should_close():
            self.close()
        return response.status_code, response.body(), t_recv


class ReactorHTTP:
    """One kept-alive HTTP/1.1 connection whose answers the process's Reactor reads: `send()`
    writes a request (from any greenlet, the reactor's and the timer's included), the reactor
    feeds the answer's bytes to geventhttpclient's parser, and `on_answer(status, body,
    t_recv_ns)` runs on the reactor's greenlet when the answer is complete (it may send the next
    request at once). No greenlet is woken per answer."""

    def __init__(self, url: str, reactor, on_answer, timeout: float = 30.0) -> None:
        self.http = LeanHTTP(url, timeout)
        self.reactor = reactor
        self.on_answer = on_answer
        self.response: Response | None = None
        self.closed = gevent.event.Event()
        self.sock = None

    def start(self) -> None:
        """Connect (blocking this greenlet) and hand the socket to the reactor."""
        self.closed.clear()
        self.http.connect()
        self.sock = self.http.sock
        self.reactor.add(self)

    def send(self, method: str, path: str, headers: dict[str, str] | None = None) -> None:
        self.response = Response(method)
        self.sock.sendall(self.http.head(method, path, headers or {}))

    def feed(self, data: bytes, t_recv: int) -> bool:
        response = self.response
        if response is None:
            return False  # bytes nobody asked for: the connection is broken
        response.feed(data)
        if not response.message_complete:
            return True
        self.response = None
        if response.should_close():  # the server will not keep it alive: a new connection
            self.reactor.discard(self)
            self.http.close()
            self.http.connect()
            self.sock = self.http.sock
            self.reactor.add(self)
        self.on_answer(response.status_code, response.body(), t_recv)
        return True

    def ended(self) -> None:
        self.http.close()
        self.response = None
        self.closed.set()

    def close(self) -> None:
        self.reactor.discard(self)
        self.ended()


class ReactorSSE:
    """A Server-Sent Events client read by the process's Reactor: `GET /stream` on its own
    connection, the chunked body decoded by geventhttpclient's parser and the event stream by
    pushpull's SSE parser (pushpull/core/sse.py). Each event goes to on_event(name, data, t_recv_ns)
    with its JSON data decoded. `start()` again after a drop resumes from the last event id
    (`Last-Event-ID`). `deliveries` are the event names that carry the protocol's events (the
    default, unnamed SSE events, are named `message`): their data is read with `parse_event`."""

    def __init__(
        self,
        url: str,
        reactor,
        on_event,
        path: str = "/stream",
        timeout: float = 30.0,
        deliveries: tuple[str, ...] = ("message",),
    ) -> None:
        self.http = LeanHTTP(url, timeout)
        self.deliveries = frozenset(deliveries)
        self.reactor = reactor
        self.path = path
        self.on_event = on_event
        self.parser = SSEParser()
        self.closed = gevent.event.Event()
        self.sock = None

    @property
    def last_event_id(self) -> str | None:
        return self.parser.last_id

    def start(self) -> None:
        self.closed.clear()
        self.response = Response("GET")
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.parser = resumed_parser(self.parser)
        headers = {"Accept": "text/event-stream"}
        if self.parser.last_id is not None:
            headers["Last-Event-ID"] = self.parser.last_id
        self.http.connect()
        self.sock = self.http.sock
        self.sock.sendall(self.http.head("GET", self.path, headers))
        self.reactor.add(self)

    def feed(self, data: bytes, t_recv: int) -> bool:
        response = self.response
        response.feed(data)
        if response.headers_complete and response.status_code != 200:
            raise ConnectionError(f"GET {self.path} answered HTTP {response.status_code}")
        body = response.take_body()
        if body:
            on_event, deliveries = self.on_event, self.deliveries
            for name, text, _id in self.parser.feed(self.decoder.decode(body)):
                on_event(
                    name, parse_event(text) if name in deliveries else json.loads(text), t_recv
                )
        return not response.message_complete

    def ended(self) -> None:
        self.http.close()
        self.closed.set()

    def close(self) -> None:
        self.reactor.discard(self)
        self.ended()


def resumed_parser(old: SSEParser) -> SSEParser:
    """A fresh parser for a new stream that remembers the last event id of the old one."""
    parser = SSEParser()
    parser.last_id = old.last_id
    return parser
