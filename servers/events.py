"""The event stream every server serves: the event log (seqs, the retained events as JSON,
the publish log behind GET /published) and the tick publisher on its absolute schedule.

Nothing here knows about the harness: servers and harness meet only over docs/protocol.md.
"""

from __future__ import annotations

import os
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable
from itertools import islice

import gevent
import gevent.event

from servers.clock import now_ns
from servers.messages import chat_message, strict_json
from servers.queue import Queue, event_text, log_schedule, make_event

RETAINED_EVENTS = 100_000
RETAINED_BYTES = 64 * 2**20  # the retained events' JSON, at most (the newest event always stays)
FAULT_ENV = "PUSHPULL_FAULT_PUBLISHER_DIES_AFTER"


class EventLog:
    """Assigns seqs, keeps the newest events (and their JSON) and remembers when each was published.

    `publish()` is the only writer; listeners are called synchronously (the push server's
    broadcast), and waiters (long-polls, streams) are woken through a gevent Event.
    """

    def __init__(self, retained: int = RETAINED_EVENTS, retained_bytes: int = RETAINED_BYTES):
        self.last_seq = 0
        self._events: deque[tuple[int, str]] = deque()  # (seq, json), the newest retained
        self._retained, self._retained_bytes, self._bytes = retained, retained_bytes, 0
        # Publish log for GET /published: parallel arrays, never trimmed (24 bytes an event).
        self._log_seq = array("q")
        self._log_pub = array("q")
        self._log_sched = array("q")  # -1 for chat events
        self._new = gevent.event.Event()
        self.listeners: list[Callable[[dict | None], None]] = []
        self.bus = None  # set when several processes share the stream (servers/queue.py)

    def publish(
        self, kind: str, data: dict, t_sched: int | None, data_json: str | None = None
    ) -> dict:
        """Publish one event. Its data is encoded as strict JSON (RFC 8259) first (or comes
        encoded, from `chat_message`), so a seq is taken only for what can be published. With a
        bus (servers/queue.py) the bus takes the seq and the event is applied when it comes
        back from the queue, on this process as on every other."""
        if data_json is None:
            data_json = strict_json(data)
        if self.bus is not None:
            return self.bus.publish(kind, data, t_sched, data_json)
        seq, t_pub = self.last_seq + 1, now_ns()
        event = make_event(seq, t_pub, kind, data, t_sched)
        # the same text json.dumps(event, separators=(",", ":")) gives, data encoded once
        self.apply(seq, t_pub, log_schedule(event), event_text(event, data_json), event)
        return event

    def apply(
        self, seq: int, t_pub: int, log_sched: int, text: str, event: dict | None = None
    ) -> None:
        """Take in one published event (its JSON text): retain it, log it for /published, call
        the listeners (with the event, or None when it came as text only: they read
        `newest_json()`) and wake the waiters. `log_sched` is the tick's schedule, -1 for chat."""
        self.last_seq = max(self.last_seq, seq)
        self._events.append((seq, text))
        self._bytes += len(text)
        while len(self._events) > 1 and (
            len(self._events) > self._retained or self._bytes > self._retained_bytes
        ):
            self._bytes -= len(self._events.popleft()[1])
        if self._log_pub and t_pub < self._log_pub[-1]:  # from another process, a little late
            at = bisect_right(self._log_pub, t_pub)
            self._log_seq.insert(at, seq)
            self._log_pub.insert(at, t_pub)
            self._log_sched.insert(at, log_sched)
        else:
            self._log_seq.append(seq)
            self._log_pub.append(t_pub)
            self._log_sched.append(log_sched)
        for listener in self.listeners:
            listener(event)
        woken, self._new = self._new, gevent.event.Event()
        woken.set()

    def publish_chat(self, message: object) -> dict:
        """Publish a client's message (see `chat_message`); its `t_send` is the event's
        t_sched. Raises Unpublishable, before taking a seq, for anything that is not one."""
        message, data_json = chat_message(message)
        return self.publish("chat", message, message.get("t_send"), data_json)

    def newest_json(self) -> str:
        """The JSON text of the event just published (encoded once, sent to every client)."""
        return self._events[-1][1]

    def newest_size(self) -> int | None:
        """The length of the newest retained event's JSON; None while none is retained (a
        process that joined a shared stream knows its last seq before it holds any event)."""
        return len(self._events[-1][1]) if self._events else None

    def since(self, after: int) -> tuple[list[str], bool]:
        """JSON of the retained events with seq > after, oldest first; True if some are gone."""
        newer = self.last_seq - after
        if newer <= 0:
            return [], False
        taken = list(islice(reversed(self._events), newer))
        taken.reverse()
        truncated = len(taken) < newer
        return [text for _, text in taken], truncated

    def wait(self, timeout: float) -> None:
        """Block this greenlet until the next publish or until timeout seconds pass."""
        self._new.wait(timeout)

    def published_between(self, since_ns: int, until_ns: int) -> dict:
        lo = bisect_left(self._log_pub, since_ns)
        hi = bisect_right(self._log_pub, until_ns)
        lags = [
            (self._log_pub[i] - self._log_sched[i]) // 1000
            for i in range(lo, hi)
            if self._log_sched[i] >= 0
        ]
        return {
            "first_seq": self._log_seq[lo] if hi > lo else None,
            "last_seq": self._log_seq[hi - 1] if hi > lo else None,
            "count": max(0, hi - lo),
            "publisher_lag_us": lags,
        }


def run_publisher(log: EventLog, rate: float, pad: str, queue: Queue | None = None) -> None:
    """Publish `rate` ticks a second on an absolute schedule (t0 + k/rate): late ticks don't shift
    the ones after them, so a stalled server shows up as publisher lag, not as a slower rate.
    With a queue, only while this process holds the publisher's lease (one publisher for all)."""
    if rate <= 0:
        return
    dies_after = injected_publisher_fault()
    period_ns = int(1e9 / rate)
    data = {"pad": pad} if pad else {}
    data_json = strict_json(data)  # encoded once, not per tick
    t0 = now_ns() + period_ns
    k = 0
    while True:
        if queue is not None and not queue.leading:  # another process publishes: wait, restart
            gevent.sleep(0.1)
            t0, k = now_ns() + period_ns, 0
            continue
        t_sched = t0 + k * period_ns
        delay = (t_sched - now_ns()) / 1e9
        # behind schedule, still yield: requests (/healthz, /stats) and SIGTERM go on between ticks
        gevent.sleep(max(delay, 0))
        log.publish("tick", data, t_sched, data_json)
        k += 1
        if k == dies_after:
            raise RuntimeError(
                f"{FAULT_ENV}={dies_after}: the publisher dies, as a broken one would"
            )


def injected_publisher_fault() -> int | None:
    """For the harness's own tests only (never set by pushpull): with PUSHPULL_FAULT_PUBLISHER_
    DIES_AFTER=N in its environment, a server's publisher raises after N ticks, as a publisher
    killed by a fan-out bug does, so a test can check that the harness notices."""
    text = os.environ.get(FAULT_ENV)
    if not text:
        return None
    try:
        return max(1, int(text))
    except ValueError:
        sys.stderr.write(f"warning: {FAULT_ENV}={text!r} is not a tick count; ignored\n")
        return None


class Ticker:
    """The server's publisher (`run_publisher` in its own greenlet), started by `serve` at
    --rate and restartable at a new rate (the demo page's rate control)."""

    def __init__(self, log: EventLog, pad: str, queue: Queue | None = None) -> None:
        self.log, self.pad, self.queue = log, pad, queue
        self.rate = 0.0
        self.greenlet: gevent.Greenlet | None = None

    def set_rate(self, rate: float) -> None:
        self.stop()
        self.rate = rate
        self.greenlet = gevent.spawn(run_publisher, self.log, rate, self.pad, self.queue)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill()
