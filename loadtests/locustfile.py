"""Locust swarms for pushpull: one User class per transport, each recording per-recipient delivery
latency (receive time - publish time) of every event the server publishes.

Run by `pushpull bench`, or on its own with Locust's web UI:

    locust -f loadtests/locustfile.py --host http://127.0.0.1:5001 --transport socketio

Every delivered event is counted in Locust's request stats (type DELIVER, response time = the
delivery latency in ms, added in bulk: see DeliveryStats) so Locust's UI, CSV and HTML reports
show it. Each event is also recorded in this process's own steady-state HdrHistogram in integer
microseconds (see recorder.py), which is what pushpull reports. The window starts `--grace` seconds after spawning completes and lasts
`--measure` seconds (0: until the test stops); events published before it are recorded separately
as warm-up. With `--pushpull-out DIR` each process writes its measurements to DIR when the test stops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
from collections import Counter
from pathlib import Path

import gevent
import socketio
from geventhttpclient import URL, HTTPClient
from locust import User, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import StatsEntry, bucket_response_time

from loadtests.leanhttp import LeanHTTP, LeanSSE
from loadtests.leansio import LeanSocketIO, LeanSocketIOPolling, Reactor
from loadtests.recorder import Recorder, record_us, write_json

TRANSPORTS = ("socketio", "socketio-polling", "sse", "longpoll", "shortpoll")
LOOP_LAG_PERIOD_S = 0.010
log = logging.getLogger("pushpull")


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=os.environ.get("PUSHPULL_TRANSPORT", "socketio"),
        include_in_web_ui=False,
        help="which client to swarm with (default socketio, or $PUSHPULL_TRANSPORT)",
    )
    parser.add_argument(
        "--socketio-client",
        choices=("lean", "python-socketio"),
        default="lean",
        help="socketio transport: pushpull's lean client or python-socketio's Client (default lean)",
    )
    parser.add_argument(
        "--scenario",
        choices=("broadcast", "chat"),
        default="broadcast",
        help="broadcast: the server publishes; chat: every client sends messages (default broadcast)",
    )
    parser.add_argument(
        "--send-rate", type=float, default=0.2, help="chat: messages per second per client (0.2)"
    )
    parser.add_argument(
        "--payload-bytes", type=int, default=0, help="chat: pad each message with this many bytes"
    )
    parser.add_argument(
        "--poll-interval", type=float, default=0.5, help="short-poll period in seconds (0.5)"
    )
    parser.add_argument(
        "--longpoll-timeout", type=float, default=20.0, help="long-poll hold in seconds (20)"
    )
    parser.add_argument(
        "--grace", type=float, default=2.0, help="seconds after spawning before the window (2)"
    )
    parser.add_argument(
        "--measure", type=float, default=0.0, help="window length in seconds, 0 = until stop"
    )
    parser.add_argument(
        "--drain", type=float, default=1.0, help="seconds after the window before quitting (1)"
    )
    parser.add_argument(
        "--pushpull-out", default="", include_in_web_ui=False, help="folder for measurements"
    )


@events.init.add_listener
def on_init(environment, runner, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None:  # used as a library, not from the locust command
        return
    chosen = USER_CLASSES[options.transport]
    if options.transport == "socketio" and options.socketio_client == "python-socketio":
        chosen = PythonSocketIOUser
    if not options.user_classes:  # positional class names on the command line win
        environment.user_classes[:] = [chosen]
    environment.pushpull = Recorder(transport=options.transport)
    environment.pushpull_stats = BulkStats(environment)
    environment.pushpull_reactor = Reactor()
    if isinstance(runner, WorkerRunner):
        runner.register_message(
            "pushpull_window", lambda msg, **_kw: open_window(environment, **msg.data)
        )
    else:  # spawning_complete carries no environment: bind it here
        environment.events.spawning_complete.add_listener(
            lambda user_count, **_kw: decide_window(environment, user_count)
        )


@events.test_start.add_listener
def on_test_start(environment, **_kwargs) -> None:
    recorder: Recorder = environment.pushpull
    try:
        recorder.set_clock(*measure_clock_offset(environment.host))
    except (OSError, ValueError, KeyError) as exc:
        log.warning(
            "pushpull: no clock offset from %s/time (%s); assuming 0", environment.host, exc
        )
    if not isinstance(environment.runner, MasterRunner):
        gevent.spawn(watch_loop_lag, environment.pushpull)
        gevent.spawn(environment.pushpull_stats.run)


def decide_window(environment, user_count: int) -> None:
    """On the master (or the only process): the window starts --grace s after spawning completed;
    workers are told by message so every process uses the same window."""
    runner = environment.runner
    options = environment.parsed_options
    start_ns = environment.pushpull.server_now() + int(options.grace * 1e9)
    end_ns = start_ns + int(options.measure * 1e9) if options.measure > 0 else None
    if isinstance(runner, MasterRunner):
        runner.send_message("pushpull_window", {"start_ns": start_ns, "end_ns": end_ns})
    open_window(environment, start_ns, end_ns)
    if options.pushpull_out:
        window = {"start_ns": start_ns, "end_ns": end_ns, "clients": user_count}
        write_json(Path(options.pushpull_out) / "window.json", window)
    if options.headless and end_ns is not None:
        gevent.spawn(quit_after, runner, end_ns + int(options.drain * 1e9))


@events.test_stopping.add_listener
def on_test_stopping(environment, **_kwargs) -> None:
    """Before users are stopped (their on_stop may block), write this process's measurements."""
    recorder: Recorder = environment.pushpull
    if isinstance(environment.runner, MasterRunner):
        return
    environment.pushpull_stats.flush()
    if recorder.cpu_end is None and recorder.cpu_start is not None:
        recorder.window_ended()
    latency = recorder.histograms["latency"]
    log.info(
        "pushpull %s: %d deliveries in the window, p50 %.1f ms, p99 %.1f ms, %d duplicates",
        recorder.transport,
        latency.get_total_count(),
        latency.get_value_at_percentile(50) / 1000,
        latency.get_value_at_percentile(99) / 1000,
        recorder.duplicates,
    )
    out = environment.parsed_options.pushpull_out
    if out:
        recorder.write(out)


def open_window(environment, start_ns: int, end_ns: int | None) -> None:
    """Set the window and take this process's CPU snapshots at its edges."""
    recorder: Recorder = environment.pushpull
    recorder.window.start_ns, recorder.window.end_ns = start_ns, end_ns

    def at_edges() -> None:  # the window is on the server's clock; sleeps are on ours
        sleep_until(start_ns - recorder.clock_correction_ns)
        recorder.window_started()
        if end_ns is not None:
            sleep_until(end_ns - recorder.clock_correction_ns)
            recorder.window_ended()

    gevent.spawn(at_edges)


def measure_clock_offset(host: str, samples: int = 15) -> tuple[int, int]:
    """(server clock - this clock, uncertainty) in ns, from the GET /time exchange with the
    shortest round trip over one kept-alive connection (NTP's minimum-delay sample)."""
    url = URL(host.rstrip("/") + "/time")
    client = HTTPClient.from_url(url, concurrency=1, connection_timeout=5, network_timeout=5)
    best: tuple[int, int] | None = None
    try:
        for _ in range(samples):
            sent = time.time_ns()
            response = client.get(url.request_uri)
            body = response.read()
            received = time.time_ns()
            offset = json.loads(body)["t_ns"] - (sent + received) // 2
            if best is None or received - sent < best[0]:
                best = (received - sent, offset)
    finally:
        client.close()
    return best[1], best[0] // 2


def quit_after(runner, when_ns: int) -> None:
    sleep_until(when_ns)
    runner.quit()


def sleep_until(when_ns: int) -> None:
    delay = (when_ns - time.time_ns()) / 1e9
    if delay > 0:
        gevent.sleep(delay)


def watch_loop_lag(recorder: Recorder) -> None:
    """How late a greenlet that asks to sleep 10 ms wakes: a busy load generator wakes late."""
    lag = recorder.histograms["loop_lag"]
    while True:
        asked = time.perf_counter()
        gevent.sleep(LOOP_LAG_PERIOD_S)
        late_us = int((time.perf_counter() - asked - LOOP_LAG_PERIOD_S) * 1e6)
        if recorder.in_window_now():
            record_us(lag, late_us)


class BulkStats:
    """Locust's request stats for the hot paths, added in bulk once a second with
    `StatsEntry.extend` (what Locust itself uses to merge workers' stats) instead of one
    `events.request.fire` per delivery or poll: at thousands a second the per-event path was a
    measurable share of the load generator's CPU. Deliveries appear as type DELIVER (response
    time = delivery latency), polls as GET. The exact figures come from the HdrHistograms; these
    feed Locust's UI, CSV and HTML reports."""

    FLUSH_S = 1.0

    def __init__(self, environment) -> None:
        self.environment = environment
        self.pending: dict[tuple[str, str], list] = {}  # -> [Counter of whole ms, sum us, min, max]

    def add(self, method: str, name: str, value_us: int) -> None:
        entry = self.pending.get((method, name))
        if entry is None:
            entry = self.pending[(method, name)] = [Counter(), 0, value_us, value_us]
        entry[0][(value_us + 500) // 1000] += 1
        entry[1] += value_us
        if value_us < entry[2]:
            entry[2] = value_us
        elif value_us > entry[3]:
            entry[3] = value_us

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        stats, now = self.environment.stats, time.time()
        for (method, name), (counts, total_us, low_us, high_us) in pending.items():
            batch = StatsEntry(stats, name, method)
            batch.num_requests = sum(counts.values())
            batch.num_reqs_per_sec[int(now)] = batch.num_requests
            for ms, count in counts.items():
                batch.response_times[bucket_response_time(ms)] += count
            batch.total_response_time = total_us / 1000
            batch.min_response_time, batch.max_response_time = low_us / 1000, high_us / 1000
            batch.start_time = batch.last_request_timestamp = now
            stats.get(name, method).extend(batch)
            stats.total.extend(batch)

    def run(self) -> None:
        while True:
            gevent.sleep(self.FLUSH_S)
            self.flush()


def fire_delivery(user, latency_us: int) -> None:
    user.environment.pushpull_stats.add("DELIVER", user.transport, latency_us)


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
    transport = ""
    connect_name = ""

    def on_start(self) -> None:
        self.recorder: Recorder = self.environment.pushpull
        self.tracker = self.recorder.tracker()
        self.counted = False
        self.sender = None
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
                fire_delivery(self, latency_us)
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


class SocketIOUser(PushPullUser):
    """A Socket.IO client on the websocket transport: pushpull's lean client (leansio.py). The
    process's Reactor reads all connections on one greenlet, stamping each event as its bytes
    leave the socket; this user's greenlet only connects, waits and closes."""

    transport = "socketio"
    connect_name = "socket.io connect"

    def connect(self) -> None:
        self.client = LeanSocketIO(self.host, self.on_event, timeout=30)
        self.client.connect()
        self.environment.pushpull_reactor.add(self.client)

    def send_chat(self, message: dict) -> None:
        self.client.emit("message", message)

    @task
    def listen(self) -> None:
        self.client.closed.wait()  # set when the server ends the connection
        self.recorder.errors += 1
        self.ended()
        raise StopUser()

    def disconnect(self) -> None:
        self.environment.pushpull_reactor.discard(self.client)
        self.client.close()


class SocketIOPollingUser(PushPullUser):
    """Socket.IO restricted to its long-polling transport (lean client, leansio.py): one held
    GET at a time on this user's greenlet, POSTs for pongs and chat messages."""

    transport = "socketio-polling"
    connect_name = "socket.io (polling) connect"

    def connect(self) -> None:
        self.client = LeanSocketIOPolling(
            self.host,
            self.on_event,
            timeout=30,
            on_poll=lambda sent, answered: self.recorder.note_poll(self.tracker, sent, answered),
        )
        self.client.connect()

    def send_chat(self, message: dict) -> None:
        self.client.emit("message", message)

    @task
    def listen(self) -> None:
        self.client.run()  # returns when the session ends
        self.recorder.errors += 1
        self.ended()
        raise StopUser()

    def disconnect(self) -> None:
        self.client.close()


class PythonSocketIOUser(PushPullUser):
    """A Socket.IO client on the websocket transport using python-socketio's Client: the
    reference implementation (and the naive load generator: a greenlet per received message)."""

    transport = "socketio"
    connect_name = "socket.io connect"

    def connect(self) -> None:
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("welcome", lambda data: self.on_event("welcome", data, 0))
        self.sio.on("response", lambda data: self.on_event("response", data, time.time_ns()))
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.connect(self.host, transports=["websocket"], wait_timeout=30)

    def on_disconnect(self, reason=None) -> None:
        if self.counted:  # the server ended it (on_stop clears `counted` before disconnecting)
            self.recorder.errors += 1
            self.ended()

    def send_chat(self, message: dict) -> None:
        self.sio.emit("message", message)

    @task
    def listen(self) -> None:
        gevent.sleep(60)  # deliveries arrive on the client's own greenlets
        if not self.counted:
            raise StopUser()

    def disconnect(self) -> None:
        self.sio.disconnect()


class PostingUser(PushPullUser):
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
    """Server-Sent Events (leanhttp.LeanSSE): one streamed response, parsed by sseclient-py."""

    transport = "sse"
    connect_name = "GET /stream"

    def connect(self) -> None:
        # SSE's default event name is `message`; the protocol's deliveries are its events
        self.client = LeanSSE(
            self.host,
            self.on_sse,
        )
        super().connect()
        self.stream = gevent.spawn(self.client.run)
        deadline = time.monotonic() + 30
        while self.tracker.base is None:  # connected once the welcome arrived
            if self.stream.dead:
                raise ConnectionError(f"GET /stream failed: {self.stream.exception}")
            if time.monotonic() > deadline:
                raise ConnectionError("no welcome on GET /stream within 30 s")
            gevent.sleep(0.01)

    def on_sse(self, name: str, data, t_recv: int) -> None:
        if name == "welcome" and self.tracker.segment is not None:
            return  # a resumed stream: the same events stay owed, the same segment goes on
        self.on_event("response" if name == "message" else name, data, t_recv)

    @task
    def listen(self) -> None:
        """Stream; when the server drops the stream, reconnect with Last-Event-ID (the events
        published meanwhile are sent first) up to RESUMES times, counting each drop as an error."""
        for attempt in range(self.RESUMES + 1):
            self.stream.join()  # returns when the stream ends
            self.recorder.errors += 1
            if attempt == self.RESUMES:
                break
            gevent.sleep(0.2)
            self.stream = gevent.spawn(self.client.run)
        self.ended()
        raise StopUser()

    RESUMES = 3

    def disconnect(self) -> None:
        self.stream.kill()
        self.client.close()
        super().disconnect()


class PollingUser(PostingUser):
    """Shared by the polling clients: baseline, then polls that deliver what they return, over
    one kept-alive connection (leanhttp.py; Locust's FastHttpUser cost as much CPU per poll as
    the server spent answering it)."""

    abstract = True
    connect_name = "GET /events (baseline)"

    def connect(self) -> None:
        super().connect()
        self.http = LeanHTTP(self.host)
        status, body, _ = self.http.request("GET", "/events")
        if status != 200:
            raise ConnectionError(f"GET /events answered HTTP {status}")
        self.cursor = json.loads(body)["last_seq"]
        self.tracker.joined(self.cursor)

    def poll(self, timeout: float, name: str) -> None:
        recorder = self.recorder
        sent = time.time_ns()
        try:
            status, raw, t_recv = self.http.request(
                "GET", f"/events?after={self.cursor}&timeout={timeout:g}"
            )
        except (OSError, ConnectionError) as exc:
            fire_failure(self, name, time.perf_counter(), exc, kind="GET")
            gevent.sleep(0.1)  # don't spin on a dead server
            return
        self.environment.pushpull_stats.add("GET", name, (t_recv - sent) // 1000)
        recorder.note_poll(self.tracker, sent, t_recv)
        if status != 200:
            recorder.errors += 1
            return
        events = json.loads(raw)["events"]
        delivered = 0
        for event in events:
            latency_us = self.tracker.deliver(event, t_recv)
            if latency_us is not None:
                delivered += 1
                fire_delivery(self, latency_us)
        if events:
            self.cursor = max(self.cursor, events[-1]["seq"])
        recorder.record_poll(delivered)

    def disconnect(self) -> None:
        self.http.close()
        super().disconnect()


class LongPollUser(PollingUser):
    """Long polling: each request is held by the server until there is something new."""

    transport = "longpoll"

    @task
    def long_poll(self) -> None:
        self.poll(self.environment.parsed_options.longpoll_timeout, "GET /events (long-poll)")


class ShortPollUser(PollingUser):
    """Short polling every --poll-interval seconds on an absolute schedule. Phases are spread
    evenly from a random start (a golden-ratio sequence), so even a few clients sample the whole
    interval; Locust's constant_pacing would line up clients spawned together."""

    transport = "shortpoll"
    spread = random.random()

    def on_start(self) -> None:
        super().on_start()
        self.interval_ns = int(self.environment.parsed_options.poll_interval * 1e9)
        ShortPollUser.spread = (ShortPollUser.spread + GOLDEN_RATIO) % 1.0
        self.next_ns = time.time_ns() + int(ShortPollUser.spread * self.interval_ns)

    @task
    def short_poll(self) -> None:
        sleep_until(self.next_ns)
        self.next_ns += self.interval_ns
        self.poll(0, "GET /events (short-poll)")


GOLDEN_RATIO = 0.6180339887498949
USER_CLASSES = {
    "socketio": SocketIOUser,
    "socketio-polling": SocketIOPollingUser,
    "sse": SSEUser,
    "longpoll": LongPollUser,
    "shortpoll": ShortPollUser,
}
