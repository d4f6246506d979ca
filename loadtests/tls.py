"""TLS for the lean clients, with OpenSSL's record layer in memory (ssl.MemoryBIO): the TCP socket
stays a plain socket, so the Reactor (loadtests/ws.py) still reads many of them from one greenlet
with the kernel's arrival stamps, and hands what it read to `decrypt`. The server's certificate
and name are verified against the CA the run trusts (pushpull/core/tls.py), never skipped.

    sock = TLSSocket(gevent_socket, "127.0.0.1")   # the handshake, verified, on this greenlet
    sock.sendall(b"GET / HTTP/1.1...")             # encrypted, then written
    sock.recv(65536)                               # blocking read of plaintext (MSG_PEEK too)
    sock.decrypt(bytes_the_reactor_read)           # plaintext, b"" for a partial record

A receive time is the arrival of the record's last TCP segment, as over plain TCP: decryption is
the load generator's own CPU, counted as such, not added to the latency.
"""

from __future__ import annotations

import socket
import ssl

from pushpull.core import tls

RECV_BYTES = 65536


class TLSFailed(ConnectionError):
    """The TLS handshake failed: the reason is one line (e.g. the certificate's verification)."""


class TLSSocket:
    def __init__(self, sock, server_hostname: str) -> None:
        self.raw = sock  # the gevent socket: blocking reads and writes yield to the hub
        self._sock = sock._sock  # the real socket under it, which the Reactor reads
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.sslobj = tls.context().wrap_bio(
            self.incoming, self.outgoing, server_hostname=server_hostname
        )
        self.plain = bytearray()  # plaintext decrypted but not yet taken (a peek, a short read)
        self.eof = False  # the server's close_notify or its TCP FIN came
        self._peeked = 0  # how much of `plain` the last MSG_PEEK returned
        self.handshake()

    def handshake(self) -> None:
        while True:
            try:
                self.sslobj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = self.raw.recv(RECV_BYTES)
                if not data:
                    raise TLSFailed(
                        "the server closed the connection during the TLS handshake"
                    ) from None
                self.incoming.write(data)
            except ssl.SSLError as exc:
                raise TLSFailed(f"TLS handshake failed: {tls.reason(exc)}") from None
        self._flush()

    def _flush(self) -> None:
        out = self.outgoing.read()
        if out:
            self.raw.sendall(out)

    def sendall(self, data: bytes) -> None:
        self.sslobj.write(data)
        self._flush()

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext that `data` (read off the socket) completes; b"" if it ends no record."""
        self.incoming.write(data)
        return self._decrypted()

    def _decrypted(self) -> bytes:
        """Every whole record that the bytes written to `incoming` hold, decrypted."""
        chunks = []
        while True:
            try:
                chunk = self.sslobj.read(RECV_BYTES)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.eof = True
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def take_pending(self) -> bytes:
        """Plaintext already decrypted that nobody has read (before the Reactor takes over)."""
        data = bytes(self.plain) + self._decrypted()
        self.plain.clear()
        return data

    def _read_more(self) -> None:
        """Block until more plaintext is decrypted, or the stream ends."""
        while not self.eof:
            data = self._decrypted()
            if data:
                self.plain += data
                return
            raw = self.raw.recv(RECV_BYTES)
            if not raw:
                self.eof = True
                return
            self.incoming.write(raw)

    def recv(self, size: int, flags: int = 0) -> bytes:
        """Blocking read of up to `size` bytes of plaintext; b"" at the end of the stream. With
        MSG_PEEK the bytes stay to be read again, as on a socket; peeking again at what was
        all seen waits for more."""
        peek = flags & socket.MSG_PEEK
        if not self.plain or (peek and len(self.plain) <= self._peeked):
            self._read_more()
        data = bytes(self.plain[:size])
        if peek:
            self._peeked = len(data)
        else:
            del self.plain[:size]
            self._peeked = 0
        return data

    # -- the socket's own: delegated ----------------------------------------------------------
    def setsockopt(self, *args) -> None:
        self.raw.setsockopt(*args)

    def settimeout(self, timeout: float | None) -> None:
        self.raw.settimeout(timeout)

    def fileno(self) -> int:
        return self.raw.fileno()

    def shutdown(self, how: int) -> None:
        self.raw.shutdown(how)

    def close(self) -> None:
        self.raw.close()
