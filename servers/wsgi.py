"""The gevent WSGI server every server runs on: TCP_NODELAY on every connection, the bytes
crossing each counted, a WebSocket connection closed when its handler returns, `--admin`'s
POST /admin/drop, an error log without harmless lines, and the open-file limit lifted."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import sys
import time
from collections.abc import Callable

import gevent
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
