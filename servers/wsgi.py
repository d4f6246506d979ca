"""The gevent WSGI server every server runs on: TCP_NODELAY on every connection, the bytes
crossing each counted, TLS when given a context (`--tls-cert`), a WebSocket connection closed
when its handler returns, `--admin`'s POST /admin/drop, an error log without harmless lines,
and the open-file limit lifted."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable

import gevent
import gevent.ssl
from gevent import pywsgi
from gevent import socket as gsocket

from servers.stats import Counters


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

    wire_counts = (0, 0)  # over TLS: the connection's bytes on the wire after its last answer

    def handle_one_response(self):
        try:
            super().handle_one_response()
        finally:
            if self.environ.get("HTTP_UPGRADE", "").lower() == "websocket":
                self.close_connection = True
                self.finish_websocket()
            if self.server.tls_context is not None:  # pywsgi closes the socket itself after
                self.wire_counts = tcp_bytes(self.socket)  # the last answer: read it first

    def handle_error(self, t, v, tb):
        """A TLS client that went away without its close_notify (a closed tab, a dropped
        client) is over TLS what a reset is over TCP, which pywsgi ends quietly: so is it."""
        if issubclass(t, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            self.close_connection = True
            return
        super().handle_error(t, v, tb)

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
    TLS_HANDSHAKE_S = 10.0  # a client that opens TCP and never finishes its handshake

    def __init__(
        self,
        *args,
        counters: Counters,
        admin: bool = False,
        tls_context: ssl.SSLContext | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.counters = counters
        self._socket_class = counting_socket_class(counters)
        self._live: dict[gevent.Greenlet, socket.socket] = {}  # handler greenlet -> its socket
        self.tls_context = tls_context
        if tls_context is not None:  # TLS ends here: the wire's bytes are the kernel's counts
            self.environ["wsgi.url_scheme"] = "https"
            self._closed_wire = [0, 0]  # bytes read and written by connections already closed
            counters.wire = self.wire_bytes
        if admin:
            self.application = admin_routes(self.application, self.drop_connections, counters)

    def handle(self, sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.counters.peer_addresses.add(address[0])
        if self.tls_context is not None:
            return self.handle_tls(sock, address)
        counted = self._socket_class(fileno=sock.detach())
        with self._serving(counted):
            return super().handle(counted, address)

    @contextlib.contextmanager
    def _serving(self, sock):
        """`sock` registered under the calling handler's greenlet while it is served (for
        /admin/drop, and over TLS for the live connections' wire counts)."""
        handler = gevent.getcurrent()
        self._live[handler] = sock
        try:
            yield
        finally:
            self._live.pop(handler, None)

    def handle_tls(self, sock, address):
        """The TLS handshake on the handler's greenlet, then the request as over TCP. A failed
        handshake (a client that does not trust our CA, or speaks plain HTTP) is counted in
        /stats, not logged. The connection's bytes are read from TCP_INFO when it closes."""
        try:
            sock.settimeout(self.TLS_HANDSHAKE_S)
            secured = self.tls_context.wrap_socket(sock, server_side=True)
            secured.settimeout(None)
        except (ssl.SSLError, OSError):
            self.counters.tls_handshakes_failed += 1
            sock.close()
            return None
        request = self.handler_class(secured, address, self)  # what pywsgi's handle() does
        try:
            with self._serving(secured):
                request.handle()
        finally:  # no longer live: its last counts join the closed connections'
            self._closed_add(request.wire_counts)

    def _closed_add(self, counts: tuple[int, int]) -> None:
        self._closed_wire[0] += counts[0]
        self._closed_wire[1] += counts[1]

    def wire_bytes(self) -> tuple[int, int]:
        """(read, written) on the wire by every TLS connection so far, the open ones included."""
        read, written = self._closed_wire
        for sock in list(self._live.values()):
            got, sent = tcp_bytes(sock)
            read, written = read + got, written + sent
        return read, written

    def drop_connections(self) -> int:
        """Shut down every accepted connection but the calling handler's own, at once (no yield
        in between); returns how many. Each handler then sees its connection end and cleans up."""
        current = gevent.getcurrent()
        dropped = [sock for handler, sock in self._live.items() if handler is not current]
        self._live = {handler: sock for handler, sock in self._live.items() if handler is current}
        for sock in dropped:
            with contextlib.suppress(OSError):
                shutdown_tcp(sock)
        return len(dropped)


TCP_INFO_BYTES = struct.Struct("=QQ")  # struct tcp_info's tcpi_bytes_acked, tcpi_bytes_received
TCP_INFO_BYTES_AT = 120  # their offset (Linux 4.1 and later: include/uapi/linux/tcp.h)


def tcp_bytes(sock) -> tuple[int, int]:
    """(received, sent and acknowledged) payload bytes of a TCP connection, from the kernel:
    what crossed the wire, TLS records included; (0, 0) for a closed socket."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    except OSError:
        return 0, 0
    if len(info) < TCP_INFO_BYTES_AT + TCP_INFO_BYTES.size:
        return 0, 0
    acked, received = TCP_INFO_BYTES.unpack_from(info, TCP_INFO_BYTES_AT)
    return received, acked


def shutdown_tcp(sock) -> None:
    """Shut the TCP connection under `sock` both ways: under TLS too (an SSLSocket's own
    shutdown() also unwraps it under its reader's feet; its handler must see a plain end)."""
    gsocket.socket.shutdown(sock, socket.SHUT_RDWR)


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
