"""A lean Socket.IO v5 / Engine.IO v4 client, websocket transport only, for the load generator.

Why not python-socketio's `Client`: measured here at 500 clients and 2 events/s, it costs the load
generator 222 us of CPU per received event against the server's 43 us to send it (a greenlet per
message, reader and writer threads, a queue, each packet decoded through two layers): above a few
hundred clients a benchmark built on it measures the client. This client costs a fraction of that:

- one `Reactor` per load-generator process reads every connection: epoll says which sockets have
  data, each is read once without blocking and fed to its connection, with no greenlet switch per
  message; each read is stamped (`time.time_ns()`) the moment its bytes leave the socket;
- the websocket handshake and everything the client sends go through wsproto (the library under
  simple-websocket); received frames are decoded by `FrameDecoder` below, because wsproto's
  receive path costs ~10 us a frame here against ~0.5 us (tests check it against wsproto);
- Engine.IO/Socket.IO packets are decoded by python-engineio's and python-socketio's own packet
  classes, except the one hot case, an EVENT on the default namespace with no ack and no binary
  (`42[...]`), which is exactly `json.loads(text[2:])`; tests/test_leansio.py checks that this
  client and python-socketio's Client see the same events with the same seqs.

    client = LeanSocketIO("http://127.0.0.1:5001", on_event=lambda name, data, t_recv_ns: ...)
    client.connect()
    client.run()          # or reactor.add(client); either way, until the connection ends
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import gevent
import gevent.event
import gevent.lock
from engineio import packet as eio
from gevent import socket as gsocket
from gevent.monkey import get_original
from socketio import packet as sio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from loadtests.leanhttp import LeanHTTP

RECV_BYTES = 65536
EPOLLIN = 0x001
OnEvent = Callable[[str, object, int], None]
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class SocketIOError(Exception):
    """The server refused or broke the Socket.IO connection."""


class FrameDecoder:
    """Decodes the server-to-client side of RFC 6455: unmasked frames, fragmented messages
    reassembled, control frames (close, ping, pong) passed through between fragments."""

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
                raise SocketIOError("the server sent a masked frame")
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


class SocketIOPackets:
    """Engine.IO v4 / Socket.IO v5 text packets, whatever carries them: events go to on_event,
    pings are answered, the namespace connect is sent and acknowledged. Subclasses say how
    text is sent (`_send_text`)."""

    def __init__(self, on_event: OnEvent) -> None:
        self.on_event = on_event
        self.sid: str | None = None
        self.eio_sid: str | None = None
        self.connected = False
        self.closed = gevent.event.Event()
        self._send_lock = gevent.lock.RLock()  # the reactor (pongs) and a chat sender may both send

    def handle_text(self, text: str, t_recv: int) -> bool:
        """One Engine.IO packet received at t_recv; False once the session is over."""
        if text.startswith('42["'):  # the hot case: an event, default namespace, no ack
            name, *args = json.loads(text[2:])
            self.on_event(name, args[0] if args else None, t_recv)
            return True
        packet = eio.Packet(encoded_packet=text)
        if packet.packet_type == eio.MESSAGE:
            return self._socketio_packet(packet.data, t_recv)
        if packet.packet_type == eio.PING:
            self._send_text(eio.Packet(eio.PONG, data=packet.data).encode())
        elif packet.packet_type == eio.OPEN:
            self.eio_sid = packet.data["sid"]
            self._send_text(eio.Packet(eio.MESSAGE, data=sio.Packet(sio.CONNECT).encode()).encode())
        elif packet.packet_type == eio.CLOSE:
            return False
        return True

    def _socketio_packet(self, text: str, t_recv: int) -> bool:
        packet = sio.Packet(encoded_packet=text)
        if packet.packet_type == sio.EVENT:
            name, *args = packet.data
            self.on_event(name, args[0] if args else None, t_recv)
        elif packet.packet_type == sio.CONNECT:
            self.sid = (packet.data or {}).get("sid")
            self.connected = True
        elif packet.packet_type == sio.CONNECT_ERROR:
            raise SocketIOError(f"Socket.IO connect refused: {packet.data}")
        elif packet.packet_type == sio.DISCONNECT:
            return False
        return True

    def emit(self, name: str, data: object) -> None:
        packet = sio.Packet(sio.EVENT, data=[name, data])
        self._send_text(eio.Packet(eio.MESSAGE, data=packet.encode()).encode())

    def _disconnect_text(self) -> str:
        return eio.Packet(eio.MESSAGE, data=sio.Packet(sio.DISCONNECT).encode()).encode()

    def ended(self) -> None:
        self.connected = False
        self.closed.set()

    def _send_text(self, text: str) -> None:
        raise NotImplementedError


class LeanSocketIO(SocketIOPackets):
    """Socket.IO over a websocket, read by the caller's greenlet (run) or a Reactor (feed)."""

    def __init__(
        self, url: str, on_event: OnEvent, timeout: float = 30.0, path: str = "/socket.io/"
    ):
        super().__init__(on_event)
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.target = f"{path}?EIO=4&transport=websocket"
        self.timeout = timeout
        self.sock: gsocket.socket | None = None
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.frames = FrameDecoder()

    # -- connection ---------------------------------------------------------------------------
    def connect(self) -> None:
        """Websocket handshake, Engine.IO open, Socket.IO connect to '/'; raises on failure."""
        self.sock = gsocket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(
            self.ws.send(Request(host=f"{self.host}:{self.port}", target=self.target))
        )
        self._handshake()
        deadline = time.monotonic() + self.timeout
        while not self.connected:
            if time.monotonic() > deadline:
                raise SocketIOError(f"no Socket.IO connect within {self.timeout:g} s")
            data = self.sock.recv(RECV_BYTES)
            if not data or not self.feed(data, time.time_ns()):
                raise SocketIOError("the server closed the connection while connecting")
        self.sock.settimeout(None)

    def _handshake(self) -> None:
        """Give wsproto exactly the HTTP response (peeked up to its blank line), no frame bytes."""
        response = b""
        while b"\r\n\r\n" not in response:
            peeked = self.sock.recv(RECV_BYTES, socket.MSG_PEEK)
            if not peeked:
                raise SocketIOError(
                    "the server closed the connection during the websocket handshake"
                )
            if b"\r\n\r\n" in peeked:
                response = self.sock.recv(peeked.index(b"\r\n\r\n") + 4)
            elif len(peeked) >= RECV_BYTES:
                raise SocketIOError("websocket handshake response too large")
            else:
                gevent.sleep(0.001)
        self.ws.receive_data(response)
        for event in self.ws.events():
            if isinstance(event, RejectConnection):
                raise SocketIOError(f"websocket upgrade refused (HTTP {event.status_code})")
            if isinstance(event, AcceptConnection):
                return
        raise SocketIOError("no websocket upgrade in the server's answer")

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

    def close(self) -> None:
        if self.sock is None:
            return
        try:
            if self.connected:
                self._send_text(self._disconnect_text())
            with self._send_lock:
                self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        except Exception:  # noqa: BLE001 - closing a broken connection is still closing it
            pass
        self.sock.close()
        self.sock = None
        self.ended()

    # -- the receive path (the hot path: one call per event per client) -----------------------
    def feed(self, data: bytes, t_recv: int) -> bool:
        """Handle bytes read from the socket at t_recv; False once the connection is over."""
        for opcode, payload in self.frames.feed(data):
            if opcode == OP_TEXT:
                if not self.handle_text(payload.decode(), t_recv):
                    return False
            elif opcode == OP_PING:
                with self._send_lock:
                    self.sock.sendall(self.ws.send(Pong(payload=payload)))
            elif opcode == OP_CLOSE:
                return False
        return True

    def _send_text(self, text: str) -> None:
        with self._send_lock:
            self.sock.sendall(self.ws.send(TextMessage(data=text)))


class LeanSocketIOPolling(SocketIOPackets):
    """Socket.IO restricted to Engine.IO's long-polling transport (no upgrade): a GET that the
    server holds until it has packets (separated by \\x1e), and POSTs for what the client sends,
    each on its own kept-alive connection."""

    def __init__(
        self,
        url: str,
        on_event: OnEvent,
        timeout: float = 30.0,
        path: str = "/socket.io/",
        on_poll: Callable[[int, int], None] | None = None,
    ):
        super().__init__(on_event)
        self.on_poll = on_poll  # (sent ns, answered ns) of each long-poll, for timelines
        self.base = f"{path}?EIO=4&transport=polling"
        self.receiving = LeanHTTP(url, timeout)
        self.sending = LeanHTTP(url, timeout)
        self.timeout = timeout

    def connect(self) -> None:
        deadline = time.monotonic() + self.timeout
        if not self.poll_once(f"{self.base}&t={time.time_ns()}"):  # the Engine.IO open
            raise SocketIOError("no Engine.IO open packet")
        while not self.connected:
            if time.monotonic() > deadline or not self.poll_once():
                raise SocketIOError(f"no Socket.IO connect within {self.timeout:g} s")

    def poll_once(self, path: str | None = None) -> bool:
        """One long-poll; False once the session is over."""
        sent = time.time_ns()
        status, body, t_recv = self.receiving.request(
            "GET", path or f"{self.base}&sid={self.eio_sid}"
        )
        if self.on_poll is not None:
            self.on_poll(sent, t_recv)
        if status != 200:
            return False
        return all(self.handle_text(text, t_recv) for text in body.decode().split("\x1e"))

    def run(self) -> None:
        try:
            while self.poll_once():
                pass
        except OSError:
            pass
        self.ended()

    def close(self) -> None:
        try:
            if self.connected:
                self._send_text(self._disconnect_text())
        except Exception:  # noqa: BLE001 - closing a broken session is still closing it
            pass
        self.receiving.close()
        self.sending.close()
        self.ended()

    def _send_text(self, text: str) -> None:
        with self._send_lock:
            status, body, _ = self.sending.request(
                "POST", f"{self.base}&sid={self.eio_sid}", text.encode(), "text/plain;charset=UTF-8"
            )
        if status != 200:
            raise SocketIOError(
                f"POST to the Engine.IO session answered HTTP {status}: {body[:80]!r}"
            )


class Reactor:
    """Reads every registered connection from one greenlet: wait until the epoll descriptor is
    readable (through gevent's hub), then read each ready socket once, without blocking."""

    def __init__(self) -> None:
        # gevent's monkey-patching hides select.epoll; the reactor wants the real one.
        self.epoll = get_original("select", "epoll")()
        self.connections: dict[int, tuple[LeanSocketIO, socket.socket]] = {}
        self.greenlet: gevent.Greenlet | None = None

    def add(self, connection: LeanSocketIO) -> None:
        raw = connection.sock._sock  # the non-blocking socket under gevent's wrapper
        self.connections[raw.fileno()] = (connection, raw)
        self.epoll.register(raw.fileno(), EPOLLIN)
        if self.greenlet is None:
            self.greenlet = gevent.spawn(self._run)

    def discard(self, connection: LeanSocketIO) -> None:
        for fd, (known, _raw) in list(self.connections.items()):
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
        while True:
            hub.wait(watcher)
            ready = poll(0)
            while ready:  # drain what arrived meanwhile before going back to the hub
                for fd, _mask in ready:
                    self._read(fd)
                ready = poll(0)

    def _read(self, fd: int) -> None:
        entry = self.connections.get(fd)
        if entry is None:
            return
        connection, raw = entry
        try:
            data = raw.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        t_recv = time.time_ns()
        try:
            alive = bool(data) and connection.feed(data, t_recv)
        except Exception:  # noqa: BLE001 - a broken connection must not stop the others
            alive = False
        if not alive:
            self.discard(connection)
            connection.ended()
