"""A TCP proxy on a free loopback port (tests and `pushpull validate`): it counts the bytes that cross it each way (what
a client really received, headers and framing included) and can hold every chunk a fixed time
before passing it on (a slow network, or a server that sits on what it sends).

    with Proxy("http://127.0.0.1:5001", delay_s=0.04) as proxy:
        client = SSEProbe(proxy.url)     # every byte each way now arrives 40 ms late
        ...
        proxy.wait_closed()              # every connection closed: every count is final
        proxy.bytes_down, proxy.bytes_up
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from urllib.parse import urlsplit


class Proxy:
    def __init__(self, target_url: str, delay_s: float = 0.0) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname, parts.port)
        self.delay_s = delay_s
        self.bytes_down = 0  # server -> client, as read from the server's side
        self.bytes_up = 0  # client -> server, as read from the client's side
        self.open_connections = 0
        self.last_activity = time.monotonic()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def wait_closed(self, timeout: float = 4.0, quiet_s: float = 1.0) -> None:
        """Until every connection has closed, or after `timeout` until nothing has crossed for
        `quiet_s`: an SSE stream stays open until the server next writes to it. The server may
        write after the client has gone (websocket-client waits up to 3 s in its close, then
        pywsgi answers what it sent 400): those bytes count too."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self.open_connections == 0:
                    return
                if time.monotonic() > deadline and time.monotonic() - self.last_activity > quiet_s:
                    return
            time.sleep(0.05)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            with self._lock:
                self.open_connections += 1
            done = threading.Barrier(2, action=self._closed)
            for source, sink, direction in ((client, server, "up"), (server, client, "down")):
                chunks: queue.Queue = queue.Queue()
                threading.Thread(
                    target=self._read, args=(source, chunks, direction), daemon=True
                ).start()
                threading.Thread(target=self._write, args=(sink, chunks, done), daemon=True).start()

    def _closed(self) -> None:
        with self._lock:
            self.open_connections -= 1

    def _read(self, source: socket.socket, chunks: queue.Queue, direction: str) -> None:
        """Read until the peer closes (even when the other side is gone: what the server sends
        is counted whether or not the client is still there to take it)."""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            with self._lock:
                self.last_activity = time.monotonic()
                if direction == "down":
                    self.bytes_down += len(data)
                else:
                    self.bytes_up += len(data)
            chunks.put((time.monotonic() + self.delay_s, data))
            if not data:
                return

    def _write(self, sink: socket.socket, chunks: queue.Queue, done: threading.Barrier) -> None:
        while True:
            due, data = chunks.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                if data:
                    sink.sendall(data)
                else:
                    sink.shutdown(socket.SHUT_WR)  # the half-close passes on
            except OSError:
                pass
            if not data:
                with contextlib.suppress(threading.BrokenBarrierError):
                    done.wait()
                return
