"""pushpull's Locust hooks: its command-line options (a transport's own are in its module), the
steady-state window (decided on the master, or the only process, and sent to workers), the clock
offset to the server, event-loop lag, Locust's request stats added in bulk, and the measurements
each process writes when the test stops. The user classes live in their transports' own modules
(named by the registry, pushpull/core/transports.py); this module knows none of them.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path

import gevent
from locust import events
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner
from locust.stats import StatsEntry, bucket_response_time

from loadtests import sources
from loadtests.recorder import Recorder
from loadtests.ws import Reactor
from pushpull.core import tls, transports
from pushpull.core.child import die_with_parent
from pushpull.core.clock import measure_offset
from pushpull.core.files import write_json
from pushpull.core.histograms import record_us
from pushpull.core.host import raise_nofile_limit

LOOP_LAG_PERIOD_S = 0.010
MEASUREMENTS = "pushpull_measurements"  # a worker's measurements, sent to the master
WORKER_REPORT_S = 30.0
LOOP_LAG_EVERY_S = 0.050
log = logging.getLogger("pushpull")


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    parser.add_argument(
        "--transport",
        choices=transports.NAMES,
        default=os.environ.get("PUSHPULL_TRANSPORT", transports.NAMES[0]),
        include_in_web_ui=False,
        help=f"which client to swarm with (default {transports.NAMES[0]}, or $PUSHPULL_TRANSPORT)",
    )
    parser.add_argument(
        "--client",
        *(f"--{t.name}-client" for t in transports.REGISTRY if len(t.clients) > 1),
        dest="client",
        choices=transports.CLIENT_KINDS,
        default="lean",
        help="the transport's load-generator client: lean (pushpull's) or its reference client",
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
        "--grace", type=float, default=2.0, help="seconds after spawning before the window (2)"
    )
    parser.add_argument(
        "--measure", type=float, default=0.0, help="window length in seconds, 0 = until stop"
    )
    parser.add_argument(
        "--drain", type=float, default=1.0, help="seconds after the window before quitting (1)"
    )
    parser.add_argument(
        "--churn-every",
        type=float,
        default=0.0,
        help="mean seconds between one client's disconnects (exponential), 0 = no churn",
    )
    parser.add_argument(
        "--churn-downtime", type=float, default=1.0, help="seconds a client stays away (1)"
    )
    parser.add_argument(
        "--resume",
        choices=("off", "on"),
        default="off",
        help="push clients ask the server to replay what they missed when they come back",
    )
    parser.add_argument(
        "--reconnect",
        choices=("off", "on"),
        default="off",
        help="on: a client the server drops comes back with its real library's backoff",
    )
    add_placement_arguments(parser)


def add_placement_arguments(parser) -> None:
    """Where the clients connect, from where, trusting which CA, and where results go."""
    parser.add_argument(
        "--server-urls",
        default="",
        help="several server processes of one stream (comma-separated URLs): clients are spread "
        "over them in turn, each keeping to its own (as sticky sessions do); --host is the first",
    )
    parser.add_argument(
        "--clock-url",
        default="",
        help="the server whose /time gives the clock offset, reached without the emulated "
        "network in between (default: --host)",
    )
    parser.add_argument(
        "--source-addresses",
        default="",
        help="loopback addresses the clients connect from, comma-separated, one per client in "
        "turn (default: the kernel's choice)",
    )
    parser.add_argument(
        "--tls-ca",
        default="",
        help="verify https/wss servers against this CA file alone (default: the system's store)",
    )
    parser.add_argument(
        "--pushpull-out", default="", include_in_web_ui=False, help="folder for measurements"
    )


def _forked_worker() -> None:
    """Locust's --processes forks its workers from the master, and a fork does not inherit the
    master's request to die with the harness (pushpull/core/child.py): each asks again at once, to
    die with the master, so a harness killed with SIGKILL leaves no worker behind (a worker
    waiting to connect to a master that has gone would otherwise retry for a minute)."""
    if not die_with_parent():
        os._exit(1)


os.register_at_fork(after_in_child=_forked_worker)


@events.init.add_listener
def on_init(environment, runner, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None:  # used as a library, not from the locust command
        return
    spec = transports.get(options.transport)
    if options.client not in spec.clients:
        raise SystemExit(
            f"locust: --client {options.client} is not a client of {spec.name} "
            f"(allowed: {', '.join(spec.clients)})"
        )
    chosen = transports.resolve(spec.client_path(options.client))
    tls.trust(options.tls_ca or None)
    if options.tls_ca or tls.secure(environment.host or ""):
        log.info(
            "TLS: every server certificate verified against %s",
            options.tls_ca or "the system's store",
        )
    addresses = [a for a in options.source_addresses.split(",") if a]
    sources.configure(addresses, offset=os.getpid())  # processes start at different addresses
    # Locust lifts the soft limit to 10,000 only; a client holds a descriptor, so take them all
    log.info("open-file limit %d", raise_nofile_limit())
    if options.churn_every > 0 and not getattr(chosen, "supports_churn", False):
        raise SystemExit(
            f"locust: --churn-every: the {options.client} client of {spec.name} cannot churn "
            "(use the lean client)"
        )
    if isinstance(runner, WorkerRunner) and not options.user_classes:
        # A worker learns the transport, client and options from the master's first spawn
        # message, after init: it offers every user class; the master names the one to run.
        environment.user_classes[:] = list(
            dict.fromkeys(
                transports.resolve(t.client_path(kind))
                for t in transports.REGISTRY
                for kind in t.clients
            )
        )
    elif not options.user_classes:  # positional class names on the command line win
        environment.user_classes[:] = [chosen]
    environment.pushpull = Recorder(transport=options.transport)
    environment.pushpull_stats = BulkStats(environment)
    environment.pushpull_reactor = Reactor()
    if isinstance(runner, WorkerRunner):
        runner.register_message(
            "pushpull_window", lambda msg, **_kw: open_window(environment, **msg.data)
        )
    else:  # spawning_complete carries no environment: bind it here
        if isinstance(runner, MasterRunner):
            environment.pushpull_measured = set()
            runner.register_message(
                MEASUREMENTS, lambda msg, **_kw: receive_measurements(environment, msg)
            )
        environment.events.spawning_complete.add_listener(
            lambda user_count, **_kw: decide_window(environment, user_count)
        )


@events.test_start.add_listener
def on_test_start(environment, **_kwargs) -> None:
    if environment.pushpull.transport != environment.parsed_options.transport:
        # a worker, now told the master's options (its own defaults named another transport)
        environment.pushpull = Recorder(transport=environment.parsed_options.transport)
    recorder: Recorder = environment.pushpull
    try:
        recorder.set_clock(
            *measure_offset(environment.parsed_options.clock_url or environment.host)
        )
    except (OSError, ValueError, KeyError) as exc:
        log.warning(
            "pushpull: no clock offset from %s/time (%s); assuming 0", environment.host, exc
        )
    if not isinstance(environment.runner, MasterRunner):
        gevent.spawn(watch_loop_lag, environment.pushpull)
        gevent.spawn(environment.pushpull_stats.run)


def decide_window(environment, user_count: int) -> None:
    """On the master (or the only process): the window starts --grace s after spawning completed;
    workers are told by message so every process uses the same window. Decided once: a
    master re-spawns (and says spawning completed again) when a worker leaves mid-test."""
    if getattr(environment, "pushpull_window_decided", False):
        return
    environment.pushpull_window_decided = True
    runner = environment.runner
    options = environment.parsed_options
    start_ns = environment.pushpull.server_now() + int(options.grace * 1e9)
    end_ns = start_ns + int(options.measure * 1e9) if options.measure > 0 else None
    if isinstance(runner, MasterRunner):
        runner.send_message("pushpull_window", {"start_ns": start_ns, "end_ns": end_ns})
        environment.pushpull_workers = {client.id for client in runner.clients.all}
    open_window(environment, start_ns, end_ns)
    if options.pushpull_out:
        window = {"start_ns": start_ns, "end_ns": end_ns, "clients": user_count}
        write_json(Path(options.pushpull_out) / "window.json", window, compact=True)
    if options.headless and end_ns is not None:  # the window is on the server's clock
        local_end_ns = end_ns - environment.pushpull.clock_correction_ns
        gevent.spawn(quit_after, runner, local_end_ns + int(options.drain * 1e9))


@events.test_stopping.add_listener
def on_test_stopping(environment, **_kwargs) -> None:
    """Before users are stopped (their on_stop may block), write this process's measurements."""
    recorder: Recorder = environment.pushpull
    if isinstance(environment.runner, MasterRunner):
        return
    if recorder.written:
        return  # a worker is stopped, then told to quit: its measurements went once
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
    recorder.written = True
    if isinstance(environment.runner, WorkerRunner):
        # A worker may run on another machine: its measurements go to the master, which
        # writes them into the cell folder (receive_measurements).
        environment.runner.send_message(MEASUREMENTS, recorder.to_dict())
        return
    out = environment.parsed_options.pushpull_out
    if out:
        recorder.write(out)


def receive_measurements(environment, msg) -> None:
    """On the master: one worker's measurements, written as that worker's process file."""
    out = environment.parsed_options.pushpull_out
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(msg.node_id))
    if out:
        write_json(Path(out) / f"loadgen-{name}.json", msg.data, compact=True)
    environment.pushpull_measured.add(msg.node_id)


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


def quit_after(runner, when_ns: int) -> None:
    """At the end (window + drain): stop; a master first waits (up to WORKER_REPORT_S) for
    every worker's measurements, then quits."""
    sleep_until(when_ns)
    if isinstance(runner, MasterRunner):
        workers = {client.id for client in runner.clients.all if client.state != STATE_MISSING}
        left = runner.environment.pushpull_workers - workers
        out = runner.environment.parsed_options.pushpull_out
        if left and out:  # a worker quit or went missing after spawning: the cell is incomplete
            log.error("pushpull: Locust workers left during the test: %s", ", ".join(sorted(left)))
            write_json(Path(out) / "workers-left.json", {"workers": sorted(left)}, compact=True)
        runner.stop()  # workers stop their users and send their measurements
        measured = runner.environment.pushpull_measured
        deadline = time.monotonic() + WORKER_REPORT_S
        while not workers <= measured and time.monotonic() < deadline:
            gevent.sleep(0.1)
        if not workers <= measured:
            log.error(
                "pushpull: %d of %d Locust workers sent measurements (missing: %s)",
                len(workers & measured),
                len(workers),
                ", ".join(sorted(workers - measured)),
            )
    runner.quit()


def sleep_until(when_ns: int) -> None:
    delay = (when_ns - time.time_ns()) / 1e9
    if delay > 0:
        gevent.sleep(delay)


def watch_loop_lag(recorder: Recorder) -> None:
    """How late a greenlet that asks to sleep 10 ms wakes: a busy load generator wakes late.
    One such sleep every LOOP_LAG_EVERY_S (20 a second: each wake-up costs the process CPU)."""
    lag = recorder.histograms["loop_lag"]
    while True:
        asked = time.perf_counter()
        gevent.sleep(LOOP_LAG_PERIOD_S)
        late_us = int((time.perf_counter() - asked - LOOP_LAG_PERIOD_S) * 1e6)
        if recorder.in_window_now():
            record_us(lag, late_us)
        gevent.sleep(LOOP_LAG_EVERY_S - LOOP_LAG_PERIOD_S)


class Accumulator:
    """One request-stats entry's values since the last flush: whole-ms counts, sum, min, max."""

    __slots__ = ("counts", "total_us", "low_us", "high_us")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.counts: Counter = Counter()
        self.total_us = 0
        self.low_us = self.high_us = None

    def add(self, value_us: int) -> None:
        self.counts[(value_us + 500) // 1000] += 1
        self.total_us += value_us
        if self.low_us is None or value_us < self.low_us:
            self.low_us = value_us
        if self.high_us is None or value_us > self.high_us:
            self.high_us = value_us


class BulkStats:
    """Locust's request stats for the hot paths, added in bulk once a second with
    `StatsEntry.extend` (what Locust itself uses to merge workers' stats) instead of one
    `events.request.fire` per delivery or poll: at thousands a second the per-event path was a
    measurable share of the load generator's CPU. Deliveries appear as type DELIVER (response
    time = delivery latency), polls as GET. The exact figures come from the HdrHistograms; these
    feed Locust's UI, CSV and HTML reports. A client keeps the bound `adder(...)` of its entry."""

    FLUSH_S = 1.0

    def __init__(self, environment) -> None:
        self.environment = environment
        self.pending: dict[tuple[str, str], Accumulator] = {}

    def adder(self, method: str, name: str):
        """The bound `add` of (method, name)'s accumulator: it stays valid across flushes."""
        return self._entry(method, name).add

    def _entry(self, method: str, name: str) -> Accumulator:
        entry = self.pending.get((method, name))
        if entry is None:
            entry = self.pending[(method, name)] = Accumulator()
        return entry

    def flush(self) -> None:
        """Hand what accumulated to Locust's stats and start again (no greenlet switch inside,
        so no add is lost between reading and resetting an accumulator)."""
        stats, now = self.environment.stats, time.time()
        for (method, name), entry in self.pending.items():
            if not entry.counts:
                continue
            batch = StatsEntry(stats, name, method)
            batch.num_requests = sum(entry.counts.values())
            batch.num_reqs_per_sec[int(now)] = batch.num_requests
            for ms, count in entry.counts.items():
                batch.response_times[bucket_response_time(ms)] += count
            batch.total_response_time = entry.total_us / 1000
            batch.min_response_time = entry.low_us / 1000
            batch.max_response_time = entry.high_us / 1000
            batch.start_time = batch.last_request_timestamp = now
            stats.get(name, method).extend(batch)
            stats.total.extend(batch)
            entry.reset()

    def run(self) -> None:
        while True:
            gevent.sleep(self.FLUSH_S)
            self.flush()
