"""The load generator's generic pieces: one epoll `Reactor` per process that reads every
connection, a timer for clients that act on a schedule, and a websocket connection (handshake
and sending through wsproto, receiving through `FrameDecoder`) that the Socket.IO and the plain
WebSocket clients share. Nothing here knows a transport.

A connection the reactor reads has `sock` (a gevent socket), `feed(data, t_recv_ns) -> bool`
(False once it is over) and `ended()`. Each read is stamped (`time.time_ns()`) the moment its
bytes leave the socket; no greenlet is switched to per message.
"""

from __future__ import annotations

import heapq
import socket
import struct
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import gevent
import gevent.event
import gevent.lock
from gevent import socket as gsocket
from gevent.monkey import get_original
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from loadtests import sources
from loadtests.tls import TLSSocket
from pushpull.core import tls

RECV_BYTES = 65536
EPOLLIN = 0x001
# Linux stamps every received packet (SO_TIMESTAMPNS, CLOCK_REALTIME like time.time_ns()); the
# reactor reads that stamp, so a read done a little later still records when the bytes arrived.
# Python's socket module does not export the constant: 35 is SO_TIMESTAMPNS (SO_TIMESTAMPNS_OLD,
# 64-bit timespec on 64-bit hosts) in Linux's asm-generic/socket.h.
SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
TIMESTAMP_SPACE = socket.CMSG_SPACE(16)
BATCH_S = 0.001  # with kernel stamps, let arrivals gather this long before reading a batch
MAX_BATCH = 128  # sockets read before the reactor yields to the hub (bounds its hold on the loop)
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class ConnectionFailed(Exception):
    """The server refused or broke the connection."""


class FrameDecoder:
    """Decodes the server-to-client side of RFC 6455: unmasked frames, fragmented messages
    reassembled, control frames (close, ping, pong) passed through between fragments. wsproto's
    receive path costs ~10 us a frame here against ~0.5 us; tests check this against wsproto."""

    __slots__ = ("buffer", "fragments", "fragment_opcode")

    def __init__(self) -> None:
        self.buffer = b""
        self.fragments: list[bytes] = []
        self.fragment_opcode = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Complete messages in `data` (plus what was buffered) as (opcode, payload)."""
        buffer = self.buffer + data if self.buffer else data
        messages = []
        pos, end = 0, len(buffer)
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            if second & 0x80:
                raise ConnectionFailed("the server sent a masked frame")
            length, header = second & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                (length,), header = struct.unpack_from("!H", buffer, pos + 2), 4
            elif length == 127:
                if end - pos < 10:
                    break
                (length,), header = struct.unpack_from("!Q", buffer, pos + 2), 10
            if end - pos < header + length:
                break
            payload = buffer[pos + header : pos + header + length]
            pos += header + length
            opcode, fin = first & 0x0F, first & 0x80
            if opcode >= OP_CLOSE:  # control frames are never fragmented
                messages.append((opcode, payload))
            elif opcode == OP_CONTINUATION or not fin:
                if opcode != OP_CONTINUATION:
                    self.fragment_opcode = opcode
                self.fragments.append(payload)
                if fin:
                    messages.append((self.fragment_opcode, b"".join(self.fragments)))
                    self.fragments.clear()
            else:
                messages.append((opcode, payload))
        self.buffer = buffer[pos:]
        return messages


def open_socket(
    host: str, port: int, timeout: float, secure: bool = False, source: tuple | None = None
):
    """A TCP connection with TCP_NODELAY, from `source` (loadtests/sources.py) if given; with
    `secure`, TLS over it (loadtests/tls.py), its handshake done and the server's certificate
    verified."""
    sock = gsocket.create_connection((host, port), timeout=timeout, source_address=source)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not secure:
        return sock
    try:
        return TLSSocket(sock, host)
    except BaseException:
        sock.close()
        raise


def default_port(secure: bool) -> int:
    return 443 if secure else 80


class WebSocketConnection:
    """A client websocket: `open()` does the handshake; received text messages go to
    `on_text(text, t_recv)` (subclasses), pings are answered, `send_text` sends. Read by the
    caller's greenlet (`run`) or by a Reactor (`feed`)."""

    def __init__(self, url: str, target: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.secure = tls.secure(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or default_port(self.secure)
        self.source = sources.current()  # the client's address, taken where it started
        self.target = target
        self.timeout = timeout
        self.sock: gsocket.socket | None = None
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.frames = FrameDecoder()
        self.closed = gevent.event.Event()
        self._send_lock = gevent.lock.RLock()  # the reactor (pongs) and a chat sender may both send

    # -- subclasses ---------------------------------------------------------------------------
    def on_text(self, text: str, t_recv: int) -> bool:
        """One text message; False once the session is over."""
        raise NotImplementedError

    # -- connection ---------------------------------------------------------------------------
    def open(self) -> None:
        """TCP connect and websocket handshake; raises ConnectionFailed or OSError."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.sock = open_socket(self.host, self.port, self.timeout, self.secure, self.source)
        self.sock.sendall(self.ws.send(Request(host=f"{host}:{self.port}", target=self.target)))
        self._handshake()

    def receive_until(self, done: Callable[[], bool], what: str) -> None:
        """Read on this greenlet until done() (e.g. the welcome arrived), then hand over."""
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() > deadline:
                raise ConnectionFailed(f"no {what} within {self.timeout:g} s")
            data = self.sock.recv(RECV_BYTES)
            if not data or not self.feed(data, time.time_ns()):
                raise ConnectionFailed(f"the server closed the connection before {what}")
        self.sock.settimeout(None)

    def _handshake(self) -> None:
        """Give wsproto exactly the HTTP response (peeked up to its blank line), no frame bytes."""
        response = b""
        while b"\r\n\r\n" not in response:
            peeked = self.sock.recv(RECV_BYTES, socket.MSG_PEEK)
            if not peeked:
                raise ConnectionFailed(
                    "the server closed the connection during the websocket handshake"
                )
            if b"\r\n\r\n" in peeked:
                response = self.sock.recv(peeked.index(b"\r\n\r\n") + 4)
            elif len(peeked) >= RECV_BYTES:
                raise ConnectionFailed("websocket handshake response too large")
            else:
                gevent.sleep(0.001)
        self.ws.receive_data(response)
        for event in self.ws.events():
            if isinstance(event, RejectConnection):
                raise ConnectionFailed(f"websocket upgrade refused (HTTP {event.status_code})")
            if isinstance(event, AcceptConnection):
                return
        raise ConnectionFailed("no websocket upgrade in the server's answer")

    def run(self) -> None:
        """Receive on this greenlet until the connection ends (the reactor does this for many)."""
        try:
            while True:
                data = self.sock.recv(RECV_BYTES)
                if not data or not self.feed(data, time.time_ns()):
                    break
        except OSError:
            pass
        self.ended()

    def goodbye(self) -> None:
        """What to send before the close frame (Socket.IO's disconnect packet)."""

    def close(self) -> None:
        if self.sock is None:
            return
        try:
            self.goodbye()
            with self._send_lock:
                self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        except Exception:  # noqa: BLE001 - closing a broken connection is still closing it
            pass
        self.sock.close()
        self.sock = None
        self.ended()

    def ended(self) -> None:
        self.closed.set()

    # -- the receive path (the hot path: one call per event per client) -----------------------
    def feed(self, data: bytes, t_recv: int) -> bool:
        """Handle bytes read from the socket at t_recv; False once the connection is over."""
        if (  # the hot case: exactly one whole, unfragmented text frame under 126 bytes
            len(data) >= 2
            and data[0] == 0x81
            and len(data) == data[1] + 2
            and data[1] < 126
            and not self.frames.buffer
            and not self.frames.fragments
        ):
            return self.on_text(data[2:].decode(), t_recv)
        for opcode, payload in self.frames.feed(data):
            if opcode == OP_TEXT:
                if not self.on_text(payload.decode(), t_recv):
                    return False
            elif opcode == OP_PING:
                with self._send_lock:
                    self.sock.sendall(self.ws.send(Pong(payload=payload)))
            elif opcode == OP_CLOSE:
                return False
        return True

    def send_text(self, text: str) -> None:
        with self._send_lock:
            self.sock.sendall(self.ws.send(TextMessage(data=text)))


def kernel_time_ns(ancillary: list) -> int | None:
    """The receive time the kernel put on the data (SCM_TIMESTAMPNS), in epoch ns."""
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            seconds, nanoseconds = struct.unpack_from("qq", payload)
            return seconds * 1_000_000_000 + nanoseconds
    return None


class Reactor:
    """Reads every registered connection from one greenlet: wait until the epoll descriptor is
    readable (through gevent's hub), then read each ready socket once, without blocking. Also
    runs timed calls (`call_at`) from one greenlet, for clients that act on a schedule.

    Receive times are the kernel's arrival stamps (SO_TIMESTAMPNS) where the kernel gives them,
    so the reactor can let arrivals gather for BATCH_S before reading them in one batch: a
    broadcast's thousand deliveries then cost a few dozen wake-ups of this greenlet instead of a
    thousand, and no latency is added to what is measured (the stamp is when the bytes reached
    this host, not when Python got to them). Without stamps it reads at once and stamps with
    time.time_ns()."""

    def __init__(self) -> None:
        # gevent's monkey-patching hides select.epoll; the reactor wants the real one.
        self.epoll = get_original("select", "epoll")()
        self.connections: dict[int, tuple[object, socket.socket]] = {}
        self.greenlet: gevent.Greenlet | None = None
        self.timers: list[tuple[int, int, Callable[[], None]]] = []
        self._timer_seq = 0
        self._timer_wake = gevent.event.Event()
        self.timer_greenlet: gevent.Greenlet | None = None

    stamped = SO_TIMESTAMPNS is not None

    def add(self, connection) -> None:
        raw = connection.sock._sock  # the non-blocking socket under gevent's wrapper
        if self.stamped:
            try:
                raw.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                Reactor.stamped = False
        decrypt = getattr(connection.sock, "decrypt", None)  # a TLS connection's record layer
        self.connections[raw.fileno()] = (connection, raw, decrypt)
        self.epoll.register(raw.fileno(), EPOLLIN)
        if self.greenlet is None:
            self.greenlet = gevent.spawn(self._run)
        if decrypt is not None and (pending := connection.sock.take_pending()):
            self._feed(connection, pending, time.time_ns())  # read before the reactor took over

    def discard(self, connection) -> None:
        for fd, (known, _raw, _decrypt) in list(self.connections.items()):
            if known is connection:
                del self.connections[fd]
                try:
                    self.epoll.unregister(fd)
                except (OSError, ValueError):
                    pass

    def _run(self) -> None:
        hub = gevent.get_hub()
        watcher = hub.loop.io(self.epoll.fileno(), 1)  # one watcher for the life of the reactor
        poll = self.epoll.poll
        full = False
        while True:
            hub.wait(watcher)  # back through the hub after every batch: other greenlets run
            if self.stamped and not full:
                gevent.sleep(BATCH_S)
            ready = poll(0, MAX_BATCH)
            for fd, _mask in ready:
                self._read(fd)
            full = len(ready) == MAX_BATCH  # more are waiting: no gathering pause next time

    def _read(self, fd: int) -> None:
        entry = self.connections.get(fd)
        if entry is None:
            return
        connection, raw, decrypt = entry
        t_recv = None
        try:
            if self.stamped:
                data, ancillary, _flags, _addr = raw.recvmsg(RECV_BYTES, TIMESTAMP_SPACE)
                t_recv = kernel_time_ns(ancillary)
            else:
                data = raw.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if t_recv is None:
            t_recv = time.time_ns()
        if data and decrypt is not None:
            try:
                data = decrypt(data)
            except Exception:  # noqa: BLE001 - a broken record ends this connection only
                data = b""
            else:
                if not data and not connection.sock.eof:
                    return  # part of a record: the rest comes in a later read
        self._feed(connection, data, t_recv)

    def _feed(self, connection, data: bytes, t_recv: int) -> None:
        try:
            alive = bool(data) and connection.feed(data, t_recv)
        except Exception:  # noqa: BLE001 - a broken connection must not stop the others
            alive = False
        if not alive:
            self.discard(connection)
            connection.ended()

    # -- timed calls --------------------------------------------------------------------------
    def call_at(self, t_ns: int, callback: Callable[[], None]) -> None:
        """Run callback() on the timer greenlet at t_ns (time.time_ns clock)."""
        self._timer_seq += 1
        heapq.heappush(self.timers, (t_ns, self._timer_seq, callback))
        if self.timer_greenlet is None:
            self.timer_greenlet = gevent.spawn(self._run_timers)
        elif self.timers[0][1] == self._timer_seq:  # the new call is the earliest
            self._timer_wake.set()

    def _run_timers(self) -> None:
        timers = self.timers
        while True:
            if not timers:
                self._timer_wake.wait()
                self._timer_wake.clear()
                continue
            delay = (timers[0][0] - time.time_ns()) / 1e9
            if delay > 0:
                self._timer_wake.wait(delay)
                self._timer_wake.clear()
                continue
            _, _, callback = heapq.heappop(timers)
            try:
                callback()
            except Exception:  # noqa: BLE001 - one client's failure must not stop the others
                pass
