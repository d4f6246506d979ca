"""The floor: the loopback round trip of a minimal websocket echo on this machine, with the same
CPU placement as the cells. No transport can deliver faster than half of it.

    python -m pushpull.harness.echo serve                       # prints {"port": N}, echoes one client
    python -m pushpull.harness.echo measure 127.0.0.1 N 300     # prints the round-trip times (us)

Both sides are plain blocking sockets and wsproto, nothing else: the least a Python websocket
delivery costs here.
"""

from __future__ import annotations

import json
import socket
import sys
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage


def _events(sock: socket.socket, ws: WSConnection):
    while True:
        data = sock.recv(65536)
        ws.receive_data(data or None)
        yield from ws.events()
        if not data:
            return


def serve() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    sock, _ = listener.accept()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ws = WSConnection(ConnectionType.SERVER)
    for event in _events(sock, ws):
        if isinstance(event, Request):
            sock.sendall(ws.send(AcceptConnection()))
        elif isinstance(event, TextMessage):
            sock.sendall(ws.send(TextMessage(data=event.data)))
        elif isinstance(event, CloseConnection):
            sock.sendall(ws.send(event.response()))
            break
    sock.close()


def measure(host: str, port: int, count: int) -> None:
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"{host}:{port}", target="/")))
    events = _events(sock, ws)
    if not isinstance(next(events), AcceptConnection):
        raise SystemExit("echo: handshake failed")
    rtts = []
    for i in range(count + 20):  # the first 20 warm up and are dropped
        started = time.perf_counter_ns()
        sock.sendall(ws.send(TextMessage(data=f'{{"seq":{i}}}')))
        while not isinstance(next(events), TextMessage):
            pass
        if i >= 20:
            rtts.append((time.perf_counter_ns() - started) // 1000)
    sock.sendall(ws.send(CloseConnection(code=1000)))
    sock.close()
    rtts.sort()
    print(json.dumps({"count": len(rtts), "rtt_us": {
        "min": rtts[0], "p50": rtts[len(rtts) // 2], "p90": rtts[int(len(rtts) * 0.9)],
        "p99": rtts[int(len(rtts) * 0.99)], "max": rtts[-1],
    }}))  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    elif sys.argv[1:2] == ["measure"] and len(sys.argv) == 5:
        measure(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit("usage: python -m pushpull.harness.echo serve | measure HOST PORT COUNT")
