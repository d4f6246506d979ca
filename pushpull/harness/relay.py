"""The network emulator: a TCP relay between every client and the server, one process, one link
per connection and direction (one client's bytes never queue behind another's), in Toxiproxy's
model (docs/network.md says what is modelled and what is not):

- **delay**: each direction's one-way delay (`up_delay_ms`, `down_delay_ms`), scheduled by the
  time the bytes arrived, so bytes leave in the order they came;
- **jitter**: each chunk's delay moved by a uniform draw in [-jitter, +jitter] (never below
  zero, and never ahead of the chunk before it: jitter delays, it does not reorder a stream);
- **rate**: a token bucket per direction and connection (`down_kbit`, `up_kbit`): a chunk is
  transmitted after the one before it, taking its size in bits over the rate, then delayed;
- **the handshake**: the client's kernel finishes the TCP handshake with the relay at once, so
  its first bytes are held one round trip longer (a real connect takes one before data flows);
- **loss**: a chunk of n segments (1448 bytes each) is lost with probability 1 - (1 - p)^n, and
  what TCP makes of that is added: a retransmission one RTO later (Linux: the round trip plus its
  200 ms minimum), with everything behind it in that direction waiting (head-of-line blocking).

    python -m pushpull.harness.relay --target 127.0.0.1:5001 --host 127.0.0.1 \\
        --network '{"rtt_ms": 70, "up_delay_ms": 35, "down_delay_ms": 35, ...}'
    -> {"listening": ["http://127.0.0.1:40123"], "pid": 1234}   (then relays until SIGTERM)

Several `--target`s get a listener each, in order. The relay reads what it passes on into memory
only while the other side takes it: a client that stops reading stops the server's writes to it,
as a real network's window does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import heapq
import json
import math
import os
import random
import signal
import socket
import sys
import time
from collections import deque

try:
    import uvloop
except ImportError:  # the relay still works on asyncio's own loop, more slowly
    uvloop = None

MSS = 1448  # bytes of payload in one TCP segment on a 1500-byte MTU
RTO_MIN_S = 0.2  # Linux's minimum retransmission timeout
HIGH_WATER = 1 << 20  # bytes a direction may hold before its source is paused
LOW_WATER = HIGH_WATER // 4
# Event loops time in whole milliseconds (epoll's timeout, libuv's clock), so a timer fires up to
# 1 ms late: the relay's timer is set this much early, the last stretch is slept precisely
# (clock_nanosleep), and every due time is on time.monotonic(), never the loop's cached clock.
EARLY_S = 0.0012
PR_SET_TIMERSLACK = 29


class Link:
    """One direction of one connection: the chunks in flight, each with the time it is due."""

    def __init__(self, scheduler, network: dict, direction: str, opened: float, rng) -> None:
        self.scheduler, self.rng = scheduler, rng
        self.delay_s = network[f"{direction}_delay_ms"] / 1000
        self.jitter_s = network["jitter_ms"] / 1000
        rate = network[f"{direction}_kbit"]
        self.seconds_per_byte = 8 / (rate * 1000) if rate else 0.0
        self.loss = network["loss_pct"] / 100
        self.rto_s = network["rtt_ms"] / 1000 + RTO_MIN_S
        # the up direction's data flows only once the (emulated) handshake's round trip is over
        handshake = network["rtt_ms"] / 1000 if direction == "up" else 0.0
        self.transmit_free = opened + handshake
        self.last_due = 0.0
        self.chunks: deque[tuple[float, bytes | None]] = deque()  # None: the end of the stream
        self.held = 0  # bytes in `chunks`
        self.scheduled = False  # its head chunk is in the scheduler's heap
        self.sink: asyncio.Transport | None = None
        self.source: asyncio.Transport | None = None
        self.paused = False
        self.ended = False  # the end of the stream was passed on
        self.on_end = None

    def push(self, data: bytes | None) -> None:
        """Take in what the source sent (None: it ended its side), due when the link says."""
        now = time.monotonic()
        size = len(data) if data else 0
        start = max(now, self.transmit_free)
        self.transmit_free = start + size * self.seconds_per_byte
        due = self.transmit_free + self.delay_s
        if self.jitter_s:
            due = max(self.transmit_free, due + self.rng.uniform(-self.jitter_s, self.jitter_s))
        if data and self.loss and self.rng.random() < 1 - (1 - self.loss) ** math.ceil(size / MSS):
            due += self.rto_s  # the retransmission, one RTO later
        due = max(due, self.last_due)  # in order: nothing overtakes what came before it
        self.last_due = due
        if data and not self.chunks and due <= now and self.sink is not None:
            if not self.sink.is_closing():  # due already (no delay): no timer, no queue
                self.sink.write(data)
            return
        self.chunks.append((due, data))
        self.held += size
        if self.held > HIGH_WATER and self.source is not None and not self.paused:
            self.paused = True
            self.source.pause_reading()
        self.schedule()

    def schedule(self) -> None:
        if not self.scheduled and self.chunks and self.sink is not None:
            self.scheduled = True
            self.scheduler.add(self.chunks[0][0], self)

    def deliver(self, now: float) -> None:
        """Pass on every chunk that is due (the sink's kernel buffer takes it or asyncio holds
        it); pause the source while the sink is slow, as a full window would."""
        self.scheduled = False
        sink = self.sink
        while self.chunks and self.chunks[0][0] <= now:
            _, data = self.chunks.popleft()
            if data is None:
                self.end()
                return
            self.held -= len(data)
            if not sink.is_closing():
                sink.write(data)
        self.resume_if_drained()
        self.schedule()

    def resume_if_drained(self) -> None:
        if (
            self.paused
            and self.held < LOW_WATER
            and self.sink is not None
            and self.sink.get_write_buffer_size() < LOW_WATER
            and self.source is not None
            and not self.source.is_closing()
        ):
            self.paused = False
            self.source.resume_reading()

    def end(self) -> None:
        self.ended = True
        self.chunks.clear()
        if not self.sink.is_closing():
            try:
                if self.sink.can_write_eof():
                    self.sink.write_eof()
                else:
                    self.sink.close()
            except OSError:  # the other side is already gone: nothing to pass the end to
                self.sink.abort()
        if self.on_end is not None:
            self.on_end()


class Scheduler:
    """One timer for every link: a heap of the links whose head chunk is waiting, by due time.
    It wakes EARLY_S before the earliest and sleeps the rest precisely, then passes on every
    chunk due by then, across all connections (a broadcast's chunks go out in one pass)."""

    def __init__(self, loop) -> None:
        self.loop = loop
        self.heap: list[tuple[float, int, Link]] = []
        self.count = 0  # ties keep their order of arrival
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf

    def add(self, due: float, link: Link) -> None:
        self.count += 1
        heapq.heappush(self.heap, (due, self.count, link))
        if due < self.timer_at:
            self.arm(due)

    def arm(self, due: float) -> None:
        """One timer, for `due` (less EARLY_S): the one set before is cancelled, never left to
        fire early and sleep the loop through the wait."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = due
        self.timer = self.loop.call_later(max(0.0, due - EARLY_S - time.monotonic()), self.fire)

    def fire(self) -> None:
        self.timer, self.timer_at = None, math.inf
        heap = self.heap
        if not heap:
            return
        wait = heap[0][0] - time.monotonic()
        if wait > EARLY_S:  # woken early (a clock's rounding): wait again, do not block the loop
            self.arm(heap[0][0])
            return
        if wait > 0:
            time.sleep(wait)  # at most EARLY_S
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, _, link = heapq.heappop(heap)
            link.deliver(now)
        if heap and heap[0][0] < self.timer_at:  # (a link added in this pass may have armed it)
            self.arm(heap[0][0])


class Side(asyncio.Protocol):
    """One socket of a relayed connection: what it reads goes into `out`, the link to the
    other socket; what the other side sends reaches it through `into`."""

    def __init__(self, out: Link, into: Link) -> None:
        self.out, self.into = out, into
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.out.source = transport
        self.into.sink = transport
        self.into.schedule()

    def data_received(self, data: bytes) -> None:
        self.out.push(data)

    def eof_received(self) -> bool:
        self.out.push(None)
        return True  # keep the other direction open: a half-close passes on

    def connection_lost(self, exc) -> None:
        if not self.out.ended and not (self.out.chunks and self.out.chunks[-1][1] is None):
            self.out.push(None)

    def pause_writing(self) -> None:
        source = self.into.source
        if source is not None and not self.into.paused:
            self.into.paused = True
            source.pause_reading()

    def resume_writing(self) -> None:
        self.into.resume_if_drained()


class Relay:
    """A listener relaying each accepted connection to `target` through its own pair of links."""

    def __init__(
        self, network: dict, target: tuple[str, int], rng: random.Random, scheduler
    ) -> None:
        self.network, self.target, self.rng, self.scheduler = network, target, rng, scheduler

    def accepted(self) -> asyncio.Protocol:
        loop = asyncio.get_running_loop()
        opened = time.monotonic()
        up = Link(self.scheduler, self.network, "up", opened, self.rng)
        down = Link(self.scheduler, self.network, "down", opened, self.rng)
        client = Side(up, down)
        loop.create_task(self.connect(up, down, client))
        return client

    async def connect(self, up: Link, down: Link, client: Side) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, server = await loop.create_connection(lambda: Side(down, up), *self.target)
        except OSError:
            if client.transport is not None:
                client.transport.abort()  # as a refused connection: the client sees it fail
            return

        def closed_both() -> None:
            if up.ended and down.ended:
                for side in (client, server):
                    if side.transport is not None:
                        side.transport.close()

        up.on_end = down.on_end = closed_both


def tighten_timer_slack() -> None:
    """Linux lets a sleep end up to 50 us late by default (timer slack); 1 ns halves the relay's
    lateness here (85 against 129 us at the median). Elsewhere: nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


async def serve(
    network: dict, targets: list[tuple[str, int]], host: str, seed: int | None, port: int = 0
) -> None:
    tighten_timer_slack()
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    scheduler = Scheduler(loop)
    listeners = []
    for target in targets:
        relay = Relay(network, target, rng, scheduler)
        first = port if not listeners else 0
        listeners.append(await loop.create_server(relay.accepted, host, first, backlog=4096))
    urls = []
    for listener in listeners:
        port = listener.sockets[0].getsockname()[1]
        urls.append(f"http://{host if ':' not in host else f'[{host}]'}:{port}")
    print(json.dumps({"listening": urls, "pid": os.getpid()}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for listener in listeners:
        listener.close()


def target_value(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="pushpull.harness.relay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--target", type=target_value, action="append", required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--network", type=json.loads, required=True, help="the profile, as JSON")
    parser.add_argument("--seed", type=int, default=None, help="for jitter and loss draws")
    parser.add_argument("--port", type=int, default=0, help="the first listener's port (0: free)")
    args = parser.parse_args(argv)
    try:
        run = serve(args.network, args.target, args.host, args.seed, args.port)
        if uvloop is not None and os.environ.get("PUSHPULL_RELAY_LOOP") != "asyncio":
            uvloop.run(run)  # the event loop in C (libuv): a few us a chunk instead of tens
        else:
            asyncio.run(run)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
