"""A lean Socket.IO v5 / Engine.IO v4 client, websocket transport only, for the load generator.

Why not python-socketio's `Client`: measured here at 500 clients and 2 events/s, it costs the load
generator 222 us of CPU per received event against the server's 43 us to send it (a greenlet per
message, reader and writer threads, a queue, each packet decoded through two layers): above a few
hundred clients a benchmark built on it measures the client. This client costs a fraction of that:

- one `Reactor` per load-generator process (loadtests/ws.py) reads every connection: epoll says
  which sockets have data, each is read once without blocking and fed to its connection, with no
  greenlet switch per message; each read is stamped the moment its bytes leave the socket;
- the websocket itself is loadtests/ws.py's `WebSocketConnection` (handshake and sending through
  wsproto, receiving through its `FrameDecoder`), shared with the plain WebSocket client;
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
import time
from collections.abc import Callable

import gevent
import gevent.event
import gevent.lock
from engineio import packet as eio
from socketio import packet as sio

from loadtests.leanhttp import LeanHTTP
from loadtests.ws import ConnectionFailed, WebSocketConnection
from pushpull.core.events import parse_event

OnEvent = Callable[[str, object, int], None]


class SocketIOError(ConnectionFailed):
    """The server refused or broke the Socket.IO connection; `data` is a refusal's payload."""

    def __init__(self, message: str, data: object = None) -> None:
        super().__init__(message)
        self.data = data


class SocketIOPackets:
    """Engine.IO v4 / Socket.IO v5 text packets, whatever carries them: events go to on_event,
    pings are answered, the namespace connect is sent and acknowledged. Subclasses say how
    text is sent (`_send_text`)."""

    def _init_packets(self, on_event: OnEvent, auth: dict | None = None) -> None:
        self.on_event = on_event
        self.auth = auth  # sent with the Socket.IO connect (e.g. {"after": SEQ} to resume)
        self.sid: str | None = None
        self.eio_sid: str | None = None
        self.connected = False

    def handle_text(self, text: str, t_recv: int) -> bool:
        """One Engine.IO packet received at t_recv; False once the session is over."""
        if text.startswith('42["response",{"seq":'):  # the hot case: a delivery
            self.on_event("response", parse_event(text[14:-1]), t_recv)
            return True
        if text.startswith('42["'):  # an event, default namespace, no ack
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
            connect = sio.Packet(sio.CONNECT, data=self.auth)
            self._send_text(eio.Packet(eio.MESSAGE, data=connect.encode()).encode())
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
            raise SocketIOError(f"Socket.IO connect refused: {packet.data}", packet.data)
        elif packet.packet_type == sio.DISCONNECT:
            return False
        return True

    def emit(self, name: str, data: object) -> None:
        packet = sio.Packet(sio.EVENT, data=[name, data])
        self._send_text(eio.Packet(eio.MESSAGE, data=packet.encode()).encode())

    def _disconnect_text(self) -> str:
        return eio.Packet(eio.MESSAGE, data=sio.Packet(sio.DISCONNECT).encode()).encode()

    def _send_text(self, text: str) -> None:
        raise NotImplementedError


class LeanSocketIO(SocketIOPackets, WebSocketConnection):
    """Socket.IO over a websocket, read by the caller's greenlet (run) or a Reactor (feed)."""

    def __init__(
        self,
        url: str,
        on_event: OnEvent,
        timeout: float = 30.0,
        path: str = "/socket.io/",
        auth: dict | None = None,
    ):
        WebSocketConnection.__init__(self, url, f"{path}?EIO=4&transport=websocket", timeout)
        self._init_packets(on_event, auth)

    def connect(self) -> None:
        """Websocket handshake, Engine.IO open, Socket.IO connect to '/'; raises on failure."""
        try:
            self.open()
            self.receive_until(lambda: self.connected, "Socket.IO connect")
        except SocketIOError:
            raise
        except ConnectionFailed as exc:
            raise SocketIOError(str(exc)) from None

    on_text = SocketIOPackets.handle_text

    def goodbye(self) -> None:
        if self.connected:
            self._send_text(self._disconnect_text())

    def ended(self) -> None:
        self.connected = False
        WebSocketConnection.ended(self)

    def _send_text(self, text: str) -> None:
        self.send_text(text)


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
        auth: dict | None = None,
    ):
        self._init_packets(on_event, auth)
        self.closed = gevent.event.Event()
        self._send_lock = gevent.lock.RLock()
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

    def ended(self) -> None:
        self.connected = False
        self.closed.set()

    def _send_text(self, text: str) -> None:
        with self._send_lock:
            status, body, _ = self.sending.request(
                "POST", f"{self.base}&sid={self.eio_sid}", text.encode(), "text/plain;charset=UTF-8"
            )
        if status != 200:
            raise SocketIOError(
                f"POST to the Engine.IO session answered HTTP {status}: {body[:80]!r}"
            )
