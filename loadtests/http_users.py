"""The REST server's load-generator users: Server-Sent Events, long polling and short polling.
Every stream and every poll is read by the process's Reactor (loadtests/ws.py), so no greenlet
is woken per delivery or per poll; short polls are sent from the reactor's timer. Chat messages
are POSTs on a connection of their own, from the user's sender greenlet. Which class serves which
transport is said by the registry (pushpull/core/transports.py). The long poll's hold is this
module's Locust option, `--longpoll-timeout`.
"""

from __future__ import annotations

import json
import random
import time

from locust import events

from loadtests.leanhttp import LeanHTTP, ReactorHTTP, ReactorSSE
from loadtests.users import ReactorUser, wait_until_joined
from pushpull.core import transports

GOLDEN_RATIO = 0.6180339887498949


class PostingUser(ReactorUser):
    """HTTP transports send chat messages as POST /messages on a connection of their own."""

    abstract = True

    def connect(self) -> None:
        self.messages = LeanHTTP(self.host)

    def send_chat(self, message: dict) -> None:
        status, body, _ = self.messages.request("POST", "/messages", json.dumps(message).encode())
        if status != 201:
            raise ConnectionError(f"POST /messages answered HTTP {status}: {body[:80]!r}")

    def disconnect(self) -> None:
        self.messages.close()


class SSEUser(PostingUser):
    """Server-Sent Events: one streamed response read by the reactor; when the server drops it,
    the stream resumes with Last-Event-ID (the events published meanwhile are sent first)."""

    connect_name = "GET /stream"
    deliveries: tuple[str, ...] = ("message",)  # SSE's default event name: unnamed events

    def connect(self) -> None:
        super().connect()
        self.client = ReactorSSE(
            self.host, self.environment.pushpull_reactor, self.on_sse, deliveries=self.deliveries
        )
        self.start_connection()
        wait_until_joined(self.tracker, self.client.closed, "GET /stream")

    def start_connection(self) -> None:
        self.client.start()

    def leave(self) -> None:
        self.client.close()

    def rejoin(self) -> None:
        """A new stream with Last-Event-ID: the server replays what was missed."""
        self.client.start()
        wait_until_joined(self.tracker, self.client.closed, "GET /stream")

    def connection_closed(self):
        return self.client.closed

    def on_sse(self, name: str, data, t_recv: int) -> None:
        # the protocol's deliveries are the events of `deliveries`' names (unnamed: `message`)
        if name in self.deliveries:
            self.on_event("response", data, t_recv)
        elif name == "welcome" and self.tracker.segment is None:
            self.on_event("welcome", data, t_recv)
        # a resumed stream's welcome: the same events stay owed, the same segment goes on

    def disconnect(self) -> None:
        self.client.close()
        super().disconnect()


class PollingUser(PostingUser):
    """Shared by the polling clients: a baseline (GET /events), then polls over one kept-alive
    connection whose answers the reactor reads and delivers."""

    abstract = True
    connect_name = "GET /events (baseline)"
    poll_name = ""

    def connect(self) -> None:
        super().connect()
        status, body, t_recv = self.messages.request("GET", "/events")
        if status != 200:
            raise ConnectionError(f"GET /events answered HTTP {status}")
        self.cursor = json.loads(body)["last_seq"]
        self.generation = 0
        self.tracker.joined(self.cursor, t_recv)
        self.count_poll = self.environment.pushpull_stats.adder("GET", self.poll_name)
        self.poller = ReactorHTTP(self.host, self.environment.pushpull_reactor, self.on_answer)
        self.start_connection()

    def start_connection(self) -> None:
        self.poller.start()
        self.poll_now()

    def connection_closed(self):
        return self.poller.closed

    def poll_now(self, hold_s: float | None = None) -> None:
        self.sent = time.time_ns()
        hold = self.hold_s if hold_s is None else hold_s
        self.poller.send("GET", f"/events?after={self.cursor}&timeout={hold:g}")

    def leave(self) -> None:
        self.generation += 1  # polls scheduled before leaving are not sent
        self.poller.close()

    def rejoin(self) -> None:
        """Back online: one poll at once (no hold) after the cursor returns what was missed and
        the server's newest seq; polling then goes on as before."""
        self.poller.start()
        self.poll_now(hold_s=0)
        wait_until_joined(self.tracker, self.poller.closed, "GET /events")

    def on_answer(self, status: int, raw: bytes, t_recv: int) -> None:
        """An answer, on the reactor's greenlet: deliver its events, then poll again."""
        recorder = self.recorder
        self.count_poll((t_recv - self.sent) // 1000)
        recorder.note_poll(self.tracker, self.sent, t_recv)
        delivered = 0
        if status == 200:
            answer = json.loads(raw)
            events = answer["events"]
            tracker = self.tracker
            if tracker.segment is None:  # the first answer after a churn reconnect
                tracker.back(answer["last_seq"], t_recv)
            for event in events:
                latency_us = tracker.deliver(event, t_recv)
                if latency_us is not None:
                    delivered += 1
                    self.count_delivery(latency_us)
            if events:
                self.cursor = max(self.cursor, events[-1]["seq"])
        else:
            recorder.errors += 1
        recorder.record_poll(delivered)
        self.next_poll()

    def next_poll(self) -> None:
        raise NotImplementedError

    def disconnect(self) -> None:
        self.poller.close()
        super().disconnect()


class LongPollUser(PollingUser):
    """Long polling: each request is held by the server until there is something new; the next
    one leaves as soon as an answer arrives."""

    poll_name = "GET /events (long-poll)"
    hold_s = transports.get("longpoll").hold_s  # the server's longest hold, unless
    # --longpoll-timeout says otherwise

    def on_start(self) -> None:
        self.hold_s = self.environment.parsed_options.longpoll_timeout
        super().on_start()

    def next_poll(self) -> None:
        self.poll_now()


class ShortPollUser(PollingUser):
    """Short polling every --poll-interval seconds on an absolute schedule, sent from the
    reactor's timer. Phases are spread evenly from a random start (a golden-ratio sequence), so
    even a few clients sample the whole interval; Locust's constant_pacing would line up clients
    spawned together. A poll whose answer comes later than the next slot leaves at once."""

    poll_name = "GET /events (short-poll)"
    hold_s = transports.get("shortpoll").hold_s
    spread = random.random()

    def on_start(self) -> None:
        self.interval_ns = int(self.environment.parsed_options.poll_interval * 1e9)
        ShortPollUser.spread = (ShortPollUser.spread + GOLDEN_RATIO) % 1.0
        self.next_ns = time.time_ns() + int(ShortPollUser.spread * self.interval_ns)
        super().on_start()

    def start_connection(self) -> None:
        self.poller.start()
        self.schedule()

    def schedule(self) -> None:
        generation = self.generation
        self.environment.pushpull_reactor.call_at(
            self.next_ns, lambda: self.scheduled_poll(generation)
        )

    def rejoin(self) -> None:
        now = time.time_ns()  # the slots missed while away are skipped, the phase is kept
        while self.next_ns + self.interval_ns <= now:
            self.next_ns += self.interval_ns
        super().rejoin()

    def scheduled_poll(self, generation: int) -> None:
        if self.poller.closed.is_set() or generation != self.generation:
            return
        try:
            self.poll_now()
        except OSError:
            self.poller.close()  # the user's greenlet counts the drop and resumes

    def next_poll(self) -> None:
        self.next_ns += self.interval_ns
        self.schedule()


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    parser.add_argument(
        "--longpoll-timeout",
        type=float,
        default=LongPollUser.hold_s,
        help=f"long-poll hold in seconds ({LongPollUser.hold_s:g})",
    )
