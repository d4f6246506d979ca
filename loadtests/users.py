"""What every pushpull load-generator user shares, whatever its transport: its Tracker, the
process's client count, the handling of `welcome` and `response`, chat sending and Locust's
request events for connects and failures (`PushPullUser`); one listen loop for a client that
watches its connection, churns, and comes back after a drop (`ConnectionUser`), either resumed a
few times on a connection the process's Reactor reads (`ReactorUser`) or as one client object
per connection (`OneClientUser`, `ReactorPushUser`). The transports' own user classes subclass
these in their own modules.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import time

import gevent
from locust import User, task
from locust.exception import StopUser

from loadtests import backoff, sources
from loadtests.hooks import sleep_until
from loadtests.recorder import Recorder

SPREAD = itertools.count()  # this process's clients, numbered to spread them over the servers


def fire_connect(user, name: str, started: float) -> None:
    user.environment.events.request.fire(
        request_type="CONNECT",
        name=name,
        response_time=(time.perf_counter() - started) * 1000,
        response_length=0,
        exception=None,
        context=None,
    )


def wait_until_joined(tracker, closed, what: str, timeout: float = 30.0) -> None:
    """Block until the tracker has a segment (the welcome, or a poll's first answer, arrived);
    raise ConnectionError if the connection ends first or nothing comes within `timeout`."""
    deadline = time.monotonic() + timeout
    while tracker.segment is None:
        if closed.is_set():
            raise ConnectionError(f"{what} ended before its welcome")
        if time.monotonic() > deadline:
            raise ConnectionError(f"no welcome on {what} within {timeout:g} s")
        closed.wait(0.005)


def fire_failure(
    user, name: str, started: float, exc: BaseException, kind: str = "CONNECT"
) -> None:
    user.environment.pushpull.errors += 1
    user.environment.events.request.fire(
        request_type=kind,
        name=name,
        response_time=(time.perf_counter() - started) * 1000,
        response_length=0,
        exception=exc,
        context=None,
    )


class PushPullUser(User):
    """What every pushpull client shares: its Tracker, the process's client count, the handling
    of `welcome` and `response`, and in the chat scenario a sender that emits a message every
    1/--send-rate seconds from a random phase (its send time travels in the message)."""

    abstract = True
    connect_name = ""
    supports_churn = False

    def on_start(self) -> None:
        self.recorder: Recorder = self.environment.pushpull
        self.tracker = self.recorder.tracker()
        self.count_delivery = self.environment.pushpull_stats.adder(
            "DELIVER", self.recorder.transport
        )
        self.counted = False
        self.sender = None
        servers = self.environment.parsed_options.server_urls
        if servers:  # one of several server processes, in turn; the client keeps to it
            urls = servers.split(",")
            self.host = urls[next(SPREAD) % len(urls)]
        sources.take()  # this client's source address (--source-addresses), for all it opens
        started = time.perf_counter()
        self.tracker.connect_started_ns = time.time_ns()
        try:
            self.connect()
        except Exception as exc:  # noqa: BLE001 - any failure to connect is a measured error
            fire_failure(self, self.connect_name, started, exc)
            with contextlib.suppress(Exception):
                self.disconnect()  # close what connect() opened; its client is owed nothing
            self.tracker.forget()
            raise
        fire_connect(self, self.connect_name, started)
        self.recorder.clients += 1
        self.counted = True
        options = self.environment.parsed_options
        if options.scenario == "chat" and options.send_rate > 0:
            self.sender = gevent.spawn(self.chat, options.send_rate, options.payload_bytes)

    def connect(self) -> None:
        raise NotImplementedError

    def send_chat(self, message: dict) -> None:
        raise NotImplementedError

    def on_event(self, name: str, data, t_recv: int) -> None:
        if name == "response":
            latency_us = self.tracker.deliver(data, t_recv)
            if latency_us is not None:
                self.count_delivery(latency_us)
        elif name == "welcome":
            tracker = self.tracker
            if tracker.base is None:
                tracker.joined(data["last_seq"], t_recv)
            elif tracker.segment is None:  # back from a churn disconnect
                tracker.back(data.get("head", data["last_seq"]), t_recv)

    def chat(self, send_rate: float, payload_bytes: int) -> None:
        period_ns = int(1e9 / send_rate)
        next_ns = time.time_ns() + random.randrange(period_ns)
        sender = f"{os.getpid()}-{id(self):x}"
        pad = "x" * payload_bytes
        while True:
            sleep_until(next_ns)
            next_ns += period_ns
            message = {
                "t_send": time.time_ns() + self.recorder.clock_correction_ns,
                "sender": sender,
            }
            if pad:
                message["pad"] = pad
            try:
                self.send_chat(message)
                self.recorder.sent += 1
            except Exception as exc:  # noqa: BLE001 - a failed send is a measured error
                fire_failure(self, "send message", time.perf_counter(), exc, kind="SEND")

    def ended(self) -> None:
        """The connection is over: nothing more is owed to this client."""
        if self.counted:
            self.counted = False
            self.tracker.left()
            self.recorder.clients -= 1

    def on_stop(self) -> None:
        if self.sender is not None:
            self.sender.kill()
        self.ended()
        self.disconnect()

    def disconnect(self) -> None:
        raise NotImplementedError


class ConnectionUser(PushPullUser):
    """A client whose user greenlet watches its connection (`listen`): it leaves and comes back
    on purpose (churn), and when the server ends the connection it comes back as its real
    library would (--reconnect on), resumes (`after_drop`), or ends."""

    abstract = True
    supports_churn = True
    delays: backoff.Delay | None = None  # this client's reconnect policy, made on first use

    def connection_closed(self):
        """The gevent Event that is set when the connection ends."""
        raise NotImplementedError

    @task
    def listen(self) -> None:
        while True:
            self.until_dropped()
            if self.reconnects:
                self.recover()
            elif not self.after_drop():
                break
        self.ended()
        raise StopUser()

    def until_dropped(self) -> None:
        """Return when the server ends the connection; churn (leave and come back) meanwhile."""
        while not self.connection_closed().wait(self.next_churn_s()):
            self.churn()

    def after_drop(self) -> bool:
        """The server ended the connection (--reconnect off): True if the client goes on on a
        new one. Here the drop is a measured error and the client ends."""
        self.recorder.errors += 1
        return False

    # -- churn: leave on purpose, stay away, come back (docs: --churn-every) ------------------
    def next_churn_s(self) -> float | None:
        """Seconds until this client next leaves (exponential, mean --churn-every), or None."""
        every = self.environment.parsed_options.churn_every
        return random.expovariate(1.0 / every) if every > 0 else None

    @property
    def resume(self) -> bool:
        return self.environment.parsed_options.resume == "on"

    def churn(self) -> None:
        """Leave (the transport's `leave()` closes the connection as a client going offline
        would), stay away --churn-downtime seconds, then `rejoin()`: open a new connection,
        resuming where the client does, and return once it is welcomed (or first answered).
        A failed rejoin is a measured error and ends the client."""
        self.tracker.away()
        self.leave()
        gevent.sleep(self.environment.parsed_options.churn_downtime)
        if not self.try_rejoin():
            self.ended()
            raise StopUser()

    def try_rejoin(self) -> bool:
        """One timed reconnect: True once welcomed; a failure is a measured error (False)."""
        started = time.perf_counter()
        self.tracker.coming_back(time.time_ns())
        try:
            self.rejoin()
        except Exception as exc:  # noqa: BLE001 - a failed reconnect is a measured error
            fire_failure(self, self.connect_name, started, exc)
            return False
        fire_connect(self, self.connect_name, started)
        return True

    def leave(self) -> None:
        raise NotImplementedError

    def rejoin(self) -> None:
        raise NotImplementedError

    # -- after a server drop (--reconnect on, the storm): back as the real library comes back --
    @property
    def reconnects(self) -> bool:
        return self.environment.parsed_options.reconnect == "on"

    def backoff_s(self, attempt: int) -> float:
        """The wait before reconnect `attempt` (0, 1, ...), by the registry's `backoff` policy
        of this client's transport (loadtests/backoff.py)."""
        if self.delays is None:
            self.delays = backoff.policy(self.recorder.transport)
        return self.delays(attempt)

    def recover(self) -> None:
        """The server dropped the connection: wait as the transport's real client library does,
        reconnect (resuming where the client does), and retry with its backoff until it works
        or the test stops. Each failed attempt is a measured error; the drop itself is not."""
        self.tracker.dropped(time.time_ns())
        with contextlib.suppress(Exception):
            self.leave()  # whatever the drop left half-open
        for attempt in itertools.count():
            gevent.sleep(self.backoff_s(attempt))
            if self.try_rejoin():
                return
            with contextlib.suppress(Exception):
                self.leave()


class ReactorUser(ConnectionUser):
    """A client whose connection the process's Reactor reads: this user's greenlet only connects,
    waits for the connection to end, and reconnects (resuming where the transport can) up to
    RESUMES times, counting each drop as an error."""

    abstract = True
    RESUMES = 3
    drops = 0  # how many times the server ended the connection

    def start_connection(self) -> None:
        """(Re)open the connection and hand it to the reactor; raise on failure."""
        raise NotImplementedError

    def after_drop(self) -> bool:
        self.drops += 1
        self.recorder.errors += 1
        if self.drops > self.RESUMES:
            return False
        gevent.sleep(0.2)
        try:
            self.start_connection()
        except Exception as exc:  # noqa: BLE001 - a failed resume is a measured error
            fire_failure(self, self.connect_name, time.perf_counter(), exc)
            return False
        return True


class OneClientUser(ConnectionUser):
    """A client whose connection is one client object: `make_client(after)` returns it
    connected, `watch()` hands it to what reads it. A new one replaces it on every rejoin."""

    abstract = True

    def make_client(self, after: int | None = None):
        """A connected client; with `after`, one that asks the server to resume after it."""
        raise NotImplementedError

    def watch(self) -> None:
        """Have `self.client` read (by the process's Reactor, or a greenlet of its own)."""
        raise NotImplementedError

    def connect(self) -> None:
        self.client = self.make_client()
        self.watch()

    def rejoin(self) -> None:
        self.client = self.make_client(self.tracker.away_at if self.resume else None)
        self.watch()
        self.rejoined()

    def rejoined(self) -> None:
        """What a rejoin waits for once the new client is read (nothing more, here)."""

    def connection_closed(self):
        return self.client.closed

    def leave(self) -> None:
        self.disconnect()

    def disconnect(self) -> None:
        self.client.close()


class ReactorPushUser(OneClientUser):
    """A push client on one connection that the process's Reactor reads. A dropped connection
    ends the user, counted as an error: like a real WebSocket client without an
    application-level replay, a new connection would be owed only what follows its new
    welcome."""

    abstract = True

    def watch(self) -> None:
        self.environment.pushpull_reactor.add(self.client)

    def disconnect(self) -> None:
        self.environment.pushpull_reactor.discard(self.client)
        self.client.close()
