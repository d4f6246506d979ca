"""One cell of a sweep, in the order of the run contract:

free port -> start server -> readiness (pid checked) -> verify protocol -> idle baseline ->
start Locust headless -> spawning + grace (warm-up, recorded apart) -> window -> collect ->
tear down in `finally` -> the figures (pushpull/harness/figures.py) -> summary.json.

`run_cell` is those phases in order; each phase is a method of `CellRun`, which holds what the
phases hand on (the processes to stop, the snapshots, the window) and stops everything it
started whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from pushpull.core.files import write_json
from pushpull.core.histograms import HISTOGRAMS
from pushpull.core.records import merge_process_files
from pushpull.harness.config import BenchConfig, Cell
from pushpull.harness.figures import (
    network_figures,
    proxy_figures,
    publisher_stalled,
    server_error_text,
    summarize,
    tick_rate,
)
from pushpull.harness.locust import locust_command, wait_for, wait_for_files
from pushpull.harness.logscan import scan_logs
from pushpull.harness.mq import QueueUnavailable, Redis
from pushpull.harness.network import process_cpu, start_relay
from pushpull.harness.nginx import edge_bytes, start_nginx
from pushpull.harness.procs import (
    HarnessError,
    Managed,
    exit_text,
    get_json,
    output_error,
    server_name,
    sleep_until,
    start_server,
)
from pushpull.harness.snapshots import IDLE_SETTLE_S, Snapshot, server_clock_correction, snapshot
from pushpull.harness.storm import drop_everything, storm_figures
from pushpull.harness.target import check_target, unavailable_figures
from pushpull.harness.verify import verify


def run_cell(
    config: BenchConfig, cell: Cell, cell_dir: Path, cpus: dict, tick: Callable[[str, float], None]
) -> dict:
    """Measure one cell and return its summary (also written to cell_dir/summary.json)."""
    cell_dir.mkdir(parents=True)
    run = CellRun(config, cell, cell_dir, cpus, tick)
    try:
        run.connect_queue()
        run.serve()
        run.start_proxy()
        run.start_network()
        run.measure_idle()
        run.start_locust()
        run.measure_window()
        run.collect()
    except (OSError, ValueError, psutil.Error) as exc:  # the server stopped answering, bad JSON
        raise run.failure(exc) from None
    finally:
        run.stop()
    summary = run.write_results()
    stalled = publisher_stalled(cell, config.duration, run.published, run.last_quarter)
    if stalled:
        raise HarnessError(stalled + server_error_text(summary["server_errors"]))
    if cell.clients and not summary["clients_connected"] and not summary["received"]:
        raise HarnessError(
            f"none of the {cell.clients} clients connected"
            + server_error_text(summary["loadgen_errors"])
        )
    return summary


@dataclass
class CellRun:
    """One cell being measured: what each phase hands on to the next."""

    config: BenchConfig
    cell: Cell
    cell_dir: Path
    cpus: dict
    tick: Callable[[str, float], None]
    servers: list[Managed] = field(default_factory=list)
    relay: Managed | None = None  # the network emulator between the clients and the servers
    proxy: Managed | None = None  # nginx in front of the servers (--proxy nginx)
    proxy_info: dict | None = None
    proxy_cpu: list = field(default_factory=list)  # nginx's CPU seconds at the window's edges
    proxy_bytes: list = field(default_factory=list)  # bytes at nginx's client edge, same edges
    client_urls: list[str] = field(default_factory=list)  # what the clients connect to
    locust: Managed | None = None
    redis: Redis | None = None
    channel: str | None = None  # the cell's own keys in the queue's Redis
    unavailable: dict[str, str] = field(default_factory=dict)  # a target's missing figures
    urls: list[str] = field(default_factory=list)
    stats_urls: list[str] = field(default_factory=list)
    processes: list[psutil.Process] | None = None  # None: a target, not started here
    to_server: int = 0  # ns to add to this machine's clock to read the server's
    idle: Snapshot | None = None
    idle_start: Snapshot | None = None
    idle_end: Snapshot | None = None
    window: dict = field(default_factory=dict)
    start: Snapshot | None = None
    end: Snapshot | None = None
    storm: dict | None = None
    relay_cpu: list = field(
        default_factory=list
    )  # the emulator's CPU seconds at the window's edges
    published: dict | None = None
    last_quarter: dict | None = None
    merged: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.urls[0]

    def connect_queue(self) -> None:
        if self.cell.message_queue is None:
            return
        try:
            self.redis = Redis(self.cell.message_queue)
        except QueueUnavailable as exc:
            raise HarnessError(f"--message-queue: {exc}") from None
        self.channel = f"pushpull-{os.getpid()}-{time.time_ns()}"

    def serve(self) -> None:
        """Start and verify the servers, or check the target; then find the server's clock."""
        if self.config.target is not None:  # a server the harness did not start
            self.urls = [self.config.target]
            missing = check_target(self.cell, self.cell_dir, self.url)
            self.unavailable = unavailable_figures(missing)
            self.stats_urls = [] if "requests" in self.unavailable else self.urls
        else:
            self.servers, self.urls = start_servers(
                self.config, self.cell, self.cell_dir, self.cpus, self.channel
            )
            self.stats_urls = self.urls
            self.processes = [psutil.Process(server.pid) for server in self.servers]
        # the window will be on the server's clock: its edges are waited for on ours, so that
        # the counters and /published are read when the server's clock has passed them
        self.to_server = server_clock_correction(self.url, self.unavailable)

    def start_proxy(self) -> None:
        """nginx in front of the servers (pushpull/harness/nginx.py), pinned with them, when
        the cell has --proxy nginx: the clients connect to it; the harness still reads each
        server's counters and clock directly."""
        self.client_urls = self.urls
        if self.cell.proxy is None:
            return
        pids = {server.pid for server in self.servers}
        tls_files = self.config.tls_files if self.cell.tls else None
        self.proxy, url, self.proxy_info = start_nginx(
            self.urls, self.config.host, self.cell_dir, self.cpus.get("server"), tls_files, pids
        )
        self.client_urls = [url]

    def start_network(self) -> None:
        """The network emulator (pushpull/harness/relay.py) in front of every server (or of
        nginx), pinned with the load generator, when the cell has a network; else the clients
        go direct."""
        profile = self.cell.network_profile
        if profile is None:
            return
        # Locust workers on other hosts reach this host where they reach the master
        host = self.config.master_host if self.cell.loadgen_workers else self.config.host
        self.relay, self.client_urls = start_relay(
            profile, self.client_urls, host, self.cell_dir, self.cpus
        )

    def measure_idle(self) -> None:
        """The server's idle cost (publisher, hub; no clients), at the same rate and placement,
        before Locust starts: CPU is counted in ns, so half a second will do. It starts a
        moment after the verify step's probes have gone, and no /stats read falls inside."""
        self.idle = snapshot(self.stats_urls, self.processes, self.redis)
        if self.config.idle_s > 0:  # --idle 0: not measured (idle and marginal CPU are null)
            time.sleep(IDLE_SETTLE_S)
            self.idle_start = snapshot([], self.processes, self.redis)
            time.sleep(self.config.idle_s)
            self.idle_end = snapshot([], self.processes, self.redis)

    def start_locust(self) -> None:
        """Start Locust and wait for the end of spawning: then the window's edges are known."""
        config, cell = self.config, self.cell
        spawn_s = cell.clients / config.spawn_rate
        spawn_deadline = 30 + spawn_s * 3 + (config.workers_wait_s if cell.loadgen_workers else 0)
        run_time = spawn_deadline + config.grace + config.duration + config.drain_s(cell) + 10
        self.locust = Managed(
            "locust",
            locust_command(config, cell, self.client_urls, self.cell_dir, run_time, self.url),
            self.cell_dir / "locust.log",
            self.cpus.get("loadgen"),
            cwd=self.cell_dir,
        )
        self.window = wait_for(
            self.cell_dir / "window.json",
            self.locust,
            spawn_deadline,
            "the end of spawning",
            cell.loadgen_workers,
        )

    def sleep_until(self, t_server_ns: int, what: str, phase: str) -> None:
        """Sleep until the server's clock reads t_server_ns, watching every process."""
        sleep_until(
            t_server_ns - self.to_server,
            lambda left: self.tick(what, left), self.locust, self.servers, phase,
        )  # fmt: skip

    def measure_window(self) -> None:
        """Snapshots at the window's edges (the storm's drop between), then /published."""
        window = self.window
        self.sleep_until(window["start_ns"], "warm-up", "warm-up")
        self.relay_cpu = [process_cpu(self.relay)]
        self.proxy_cpu = [process_cpu(self.proxy)]
        self.proxy_bytes = [edge_bytes(self.proxy_info["url"])] if self.proxy else []
        self.start = snapshot(self.stats_urls, self.processes, self.redis)
        if self.cell.storm:
            self.storm = drop_everything(self)
        self.sleep_until(window["end_ns"], "measuring", "window")
        self.end = snapshot(self.stats_urls, self.processes, self.redis, stats_last=True)
        self.relay_cpu.append(process_cpu(self.relay))
        self.proxy_cpu.append(process_cpu(self.proxy))
        if self.proxy is not None:
            self.proxy_bytes.append(edge_bytes(self.proxy_info["url"]))
        if "published" not in self.unavailable:
            since, until = window["start_ns"], window["end_ns"]
            self.published = get_json(self.url + f"/published?since={since}&until={until}")
            quarter_ns = (until - since) // 4
            self.last_quarter = get_json(
                self.url + f"/published?since={until - quarter_ns}&until={until}"
            )

    def collect(self) -> None:
        """Wait for Locust to finish its drain and merge every process's measurements."""
        self.tick("collecting", 0)
        try:
            self.locust.popen.wait(timeout=self.config.drain_s(self.cell) + 30)
        except Exception:
            raise HarnessError(
                f"Locust did not finish after the window: {self.locust.log_tail()}"
            ) from None
        if (self.cell_dir / "workers-left.json").exists():
            left = json.loads((self.cell_dir / "workers-left.json").read_text())["workers"]
            raise HarnessError(
                f"{len(left)} of {self.cell.loadgen_workers} Locust workers left during the cell "
                f"({', '.join(left)}): their clients' deliveries are incomplete"
            )
        files = wait_for_files(self.cell_dir, self.config.loadgen_processes(self.cell), self.locust)
        self.merged = merge_process_files(files)

    def failure(self, exc: BaseException) -> BaseException:
        """What to raise for an error while measuring: a folder that cannot be written as
        itself, a server that died by name, else the error with the server's last log line."""
        if isinstance(exc, OSError) and (cannot_write := output_error(exc)) is not None:
            return cannot_write
        for index, server in enumerate(self.servers):
            if not server.alive():
                return HarnessError(
                    f"{server_name(index, len(self.servers))} exited ({exit_text(server)}): "
                    f"{server.log_tail() or 'no log line'}"
                )
        tail = self.servers[0].log_tail() if self.servers else ""
        return HarnessError(
            f"{type(exc).__name__}: {exc}{f' (server log: {tail})' if tail else ''}"
        )

    def stop(self) -> None:
        try:
            if self.locust is not None:
                self.locust.stop()
        finally:  # a second Ctrl-C while Locust stops still stops the servers
            if self.relay is not None:
                self.relay.stop()
            if self.proxy is not None:
                self.proxy.stop()
            for server in self.servers:
                server.stop()
            if self.redis is not None:
                with contextlib.suppress(Exception):
                    self.redis.forget(self.channel)
                    self.redis.close()

    def write_results(self) -> dict:
        """histograms.json, server-stats.json and summary.json of the cell; the summary."""
        histograms = self.merged["histograms"]
        write_json(
            self.cell_dir / "histograms.json",
            {name: histograms[name].encode().decode("ascii") for name in HISTOGRAMS},
        )
        write_json(self.cell_dir / "server-stats.json", self.server_stats())
        queue = None if self.redis is None else {"redis_version": self.redis.version}
        summary = summarize(
            self.config, self.cell, self.window, self.merged, self.published, self.idle,
            self.start, self.end, queue, self.unavailable, self.idle_start, self.idle_end,
        )  # fmt: skip
        summary["contention"] = [] if self.config.target else contention(self.cell, self.cpus)
        if self.relay is not None:
            summary.update(network_figures(self.relay_cpu, self.start, self.end, self.merged))
            summary["contention"].append(
                f"the network emulator shared the load generator's core(s) "
                f"{sorted(self.cpus.get('loadgen') or []) or 'all'} with Locust"
            )
        summary["network"] = self.cell.network_profile
        summary["proxy_figures"] = proxy_figures(
            self.proxy_info, self.proxy_cpu, self.proxy_bytes, self.start, self.end, self.merged
        )
        if self.storm is not None:
            summary["recovery"] = storm_figures(
                self.storm, self.merged, self.start, self.end, self.window
            )
        logs = {s.log_path.name: s.log_path for s in self.servers}
        summary["server_errors"] = scan_logs(logs) if self.servers else None
        if self.relay is not None:
            summary["network_errors"] = scan_logs({"network.log": self.relay.log_path})
        if self.proxy is not None:
            summary["proxy_errors"] = scan_logs(
                {"nginx/error.log": self.cell_dir / "nginx" / "error.log"}
            )
        summary["loadgen_errors"] = scan_logs({self.locust.log_path.name: self.locust.log_path})
        summary["descriptors_exhausted"] = descriptors_exhausted(
            {
                **{
                    server_name(k, len(self.servers)): s.log_path
                    for k, s in enumerate(self.servers)
                },
                "nginx": self.cell_dir / "nginx" / "error.log",
                "the load generator": self.locust.log_path,
            }
        )
        write_json(self.cell_dir / "summary.json", summary)
        return summary

    def server_stats(self) -> dict:
        """The servers' /stats at the idle baseline and the window's edges, and /published."""
        idle, start, end = self.idle.stats, self.start.stats, self.end.stats
        stats = {
            "idle": idle[0] if idle else None,
            "window_start": start[0] if start else None,
            "window_end": end[0] if end else None,
            "published": self.published,
        }
        if len(self.servers) > 1:
            stats["processes"] = {"idle": idle, "window_start": start, "window_end": end}
        return stats


DESCRIPTOR_SIGNS = ("Too many open files", "worker_connections are not enough")
DESCRIPTOR_WAYS_ON = {
    "nginx": "each client holds two of nginx's, its own and the one to a server",
    "the load generator": "more Locust processes go further",
}


def descriptors_exhausted(logs: dict[str, Path]) -> str | None:
    """One line naming the first process whose log says it ran out of file descriptors (a
    capacity step's reason), or None."""
    for who, path in logs.items():
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if any(sign in text for sign in DESCRIPTOR_SIGNS):
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            way_on = DESCRIPTOR_WAYS_ON.get(who, "more server processes behind nginx go further")
            return (
                f"{who} ran out of file descriptors (the open-file limit, {hard} here, which "
                f"not even root may raise; {way_on})"
            )
    return None


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", None}


def contention(cell: Cell, cpus: dict) -> list[str]:
    """Where the cell's server side competed for cores on this machine (flagged in the data):
    more server processes than the cores they were placed on, or a local Redis sharing the
    machine's cores with the servers and Locust."""
    cores = os.cpu_count() or 1
    server_cores = len(cpus.get("server") or ()) or cores
    found = []
    if cell.server_procs > server_cores:
        found.append(f"{cell.server_procs} server processes shared {server_cores} core(s)")
    if cell.message_queue is not None and urlsplit(cell.message_queue).hostname in LOCAL_HOSTS:
        found.append(f"Redis ran on this machine's {cores} cores with the servers and Locust")
    return found


def start_servers(
    config: BenchConfig, cell: Cell, cell_dir: Path, cpus: dict, channel: str | None
) -> tuple[list[Managed], list[str]]:
    """The cell's server processes (one, or several sharing the queue's stream), verified."""
    spec, servers, urls = cell.spec, [], []
    extra = [] if channel is None else ["--message-queue", cell.message_queue, "--queue-channel", channel]  # fmt: skip
    if cell.storm:
        extra.append("--admin")  # POST /admin/drop: every connection dropped at once
    if cell.tls and cell.proxy is None:  # behind nginx, TLS ends at nginx
        extra += ["--tls-cert", config.tls_files.cert, "--tls-key", config.tls_files.key]
    try:
        for index in range(cell.server_procs):
            server, url = start_server(
                spec.server,
                config.host,
                config.port if cell.server_procs == 1 else 0,
                tick_rate(cell),
                cell.payload_bytes,
                cell_dir,
                cpus.get("server"),
                extra=extra,
                log_name="server.log" if index == 0 else f"server-{index + 1}.log",
            )
            servers.append(server)
            urls.append(url)
            problems = verify(spec, url, server.pid)
            if problems:
                (cell_dir / "verify.txt").write_text("\n".join(problems) + "\n")
                raise HarnessError(
                    f"server {spec.server} failed verification: {problems[0]} ({len(problems)} problem(s), see {cell_dir / 'verify.txt'})"
                )
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers, urls
