"""Starting a server, the same for every one: `main` (what `python -m servers.<name>` runs)
parses the common arguments and builds the server's app with its `create_app`; `run` sets up the
event log, the counters, the queue and the publisher around an app; `serve` binds, announces
`{"listening": URL, "pid": PID, "nofile": N}` on stdout, publishes and serves until a signal."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Iterable

import gevent
import gevent.ssl
from gevent import socket as gsocket

from servers.arguments import server_arguments, warn_if_exposed
from servers.clock import set_offset_ms
from servers.events import EventLog, Ticker
from servers.queue import Queue, QueueError, StreamBus
from servers.stats import Counters
from servers.wsgi import NoDelayWSGIServer, QuietErrorLog, raise_nofile_limit

AppFactory = Callable[[EventLog, Counters, "Queue | None", Iterable[str]], Callable]
Build = Callable[[EventLog, Counters, "Queue | None", Ticker], Callable]


def main(prog: str, description: str, create_app: AppFactory, argv: list[str] | None) -> None:
    """`python -m servers.<name>`: parse the common arguments, build the app, serve."""
    args = server_arguments(prog, description).parse_args(argv)
    origins = list(args.allow_origin)
    run(prog, args, lambda log, counters, queue, _ticker: create_app(log, counters, queue, origins))


def run(prog: str, args: argparse.Namespace, build: Build) -> None:
    """The event log, counters, queue (--message-queue) and publisher of `args`, the app
    `build` makes on them, then `serve`."""
    log, counters = EventLog(args.retain_events, args.retain_bytes), Counters()
    queue = open_queue(prog, args)
    ticker = Ticker(log, "x" * args.payload_bytes, queue)
    app = build(log, counters, queue, ticker)
    if queue is not None and log.bus is None:  # the app fans out locally: share a Redis Stream
        log.bus = StreamBus(queue, log, args.retain_events)
    serve(prog, args, app, log, counters, queue, ticker)


def open_queue(prog: str, args: argparse.Namespace) -> Queue | None:
    """The Redis queue of --message-queue, or None; an unusable one is one line, exit 2."""
    if not args.message_queue:
        return None
    try:
        return Queue(args.message_queue, args.queue_channel)
    except QueueError as exc:
        sys.stderr.write(f"{prog}: error: --message-queue: {exc}\n")
        raise SystemExit(2) from None


def tls_context(prog: str, args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context from --tls-cert and --tls-key, or None; a certificate and key
    that do not load (or do not match) are one line, exit 2."""
    cert = getattr(args, "tls_cert", None)
    if not cert:
        return None
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, args.tls_key)
    except (ssl.SSLError, OSError) as exc:
        sys.stderr.write(f"{prog}: error: --tls-cert {cert} --tls-key {args.tls_key}: {exc}\n")
        raise SystemExit(2) from None
    return context


def listen(prog: str, host: str, port: int) -> gsocket.socket:
    """A listening socket on host:port; a busy port (or any other failure) is one line, exit 2."""
    try:
        listener = gsocket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(4096)
    except OSError as exc:
        reason = "address already in use" if exc.errno == 98 else exc.strerror
        sys.stderr.write(f"{prog}: error: --host {host} --port {port}: {reason}\n")
        raise SystemExit(2) from None
    return listener


def serve(
    prog: str,
    args: argparse.Namespace,
    app: Callable,
    log: EventLog,
    counters: Counters,
    queue: Queue | None = None,
    ticker: Ticker | None = None,
):
    """Bind, announce, publish at --rate (through `ticker`, else a new one) and serve until
    SIGTERM/SIGINT/SIGHUP."""
    host = args.host
    set_offset_ms(getattr(args, "clock_offset_ms", 0.0))
    warn_if_exposed(prog, host)
    nofile = raise_nofile_limit()
    listener = listen(prog, host, args.port)
    server = NoDelayWSGIServer(
        listener,
        app,
        log=None,
        error_log=QuietErrorLog(),
        environ={"SERVER_NAME": host},
        counters=counters,
        admin=getattr(args, "admin", False),
        tls_context=tls_context(prog, args),
    )
    background = []
    if queue is not None:
        background.append(gevent.spawn(queue.hold_lease))
        if isinstance(log.bus, StreamBus):
            background += log.bus.start()
    if ticker is None:
        ticker = Ticker(log, "x" * args.payload_bytes, queue)
    ticker.set_rate(args.rate)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        gevent.signal_handler(signum, server.stop)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address is bracketed in a URL
    scheme = "https" if server.tls_context is not None else "http"
    url = f"{scheme}://{shown}:{listener.getsockname()[1]}"
    print(json.dumps({"listening": url, "pid": os.getpid(), "nofile": nofile}), flush=True)
    try:
        server.serve_forever()
    finally:
        ticker.stop()
        gevent.killall(background)
