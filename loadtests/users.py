"""What every pushpull load-generator user shares, whatever its transport: its Tracker, the
process's client count, the handling of `welcome` and `response`, chat sending, Locust's request
events for connects and failures, and (`ReactorUser`) a connection read by the process's Reactor
that is resumed a few times when the server drops it. The transports' own user classes subclass
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
        started = time.perf_counter()
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
            self.tracker.joined(data["last_seq"])

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


class ReactorUser(PushPullUser):
    """A client whose connection the process's Reactor reads: this user's greenlet only connects,
    waits for the connection to end, and reconnects (resuming where the transport can) up to
    RESUMES times, counting each drop as an error."""

    abstract = True
    RESUMES = 3

    def start_connection(self) -> None:
        """(Re)open the connection and hand it to the reactor; raise on failure."""
        raise NotImplementedError

    def connection_closed(self):
        """The gevent Event that is set when the connection ends."""
        raise NotImplementedError

    @task
    def listen(self) -> None:
        for attempt in range(self.RESUMES + 1):
            self.connection_closed().wait()
            self.recorder.errors += 1
            if attempt == self.RESUMES:
                break
            gevent.sleep(0.2)
            try:
                self.start_connection()
            except Exception as exc:  # noqa: BLE001 - a failed resume is a measured error
                fire_failure(self, self.connect_name, time.perf_counter(), exc)
                break
        self.ended()
        raise StopUser()


class ReactorPushUser(PushPullUser):
    """A push client on one connection that the process's Reactor reads (`make_client()` returns
    it, connected). A dropped connection ends the user, counted as an error: like a real
    WebSocket client without an application-level replay, a new connection would be owed only
    what follows its new welcome."""

    abstract = True

    def make_client(self):
        raise NotImplementedError

    def connect(self) -> None:
        self.client = self.make_client()
        self.environment.pushpull_reactor.add(self.client)

    @task
    def listen(self) -> None:
        self.client.closed.wait()  # set when the server ends the connection
        self.recorder.errors += 1
        self.ended()
        raise StopUser()

    def disconnect(self) -> None:
        self.environment.pushpull_reactor.discard(self.client)
        self.client.close()
