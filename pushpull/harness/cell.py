"""One cell of a sweep, in the order of the run contract:

free port -> start server -> readiness (pid checked) -> verify protocol -> start Locust headless
-> spawning + grace (warm-up, recorded apart) -> window -> collect -> tear down in `finally`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from pushpull.core.clock import correction, measure_offset
from pushpull.core.cputime import cpu_seconds
from pushpull.core.files import write_json
from pushpull.core.histograms import HISTOGRAMS, PERCENTILES
from pushpull.core.intervals import latency_intervals
from pushpull.core.records import expected_deliveries, gap_figures, merge_process_files
from pushpull.core.schema import CellSummary, LatencySummary
from pushpull.harness.config import BenchConfig, Cell
from pushpull.harness.logscan import scan_logs
from pushpull.harness.manifest import PROJECT_ROOT
from pushpull.harness.mq import QueueUnavailable, Redis, redacted
from pushpull.harness.procs import (
    HarnessError,
    Managed,
    get_json,
    output_error,
    request_json,
    start_server,
)
from pushpull.harness.verify import OPTIONAL_ENDPOINTS, verify, verify_target

LOCUSTFILE = PROJECT_ROOT / "loadtests" / "locustfile.py"


@dataclass
class Snapshot:
    """The servers at one instant: each process's own counters (the first's first), their CPU
    time as the kernel sees it, and the queue's Redis's CPU time when there is one."""

    t_ns: int
    stats: list[dict]
    cpu_s: float
    rss_bytes: int
    queue_cpu_s: float | None = None
    cpu_source: str | None = None  # schedstat (ns), ticks (10 ms), or the target's /stats

    def total(self, key: str) -> int:
        return sum(stats[key] for stats in self.stats)


def snapshot(
    urls: list[str],
    processes: list[psutil.Process] | None,
    redis: Redis | None,
    stats_last: bool = False,
) -> Snapshot:
    """Counters from each server's /stats (no URLs: the target has none); CPU and memory from
    the kernel for processes the harness started, else (None) from what /stats reports. /stats
    is read before the CPU (at an interval's start) or, with `stats_last`, after it (at its end),
    so the harness's own requests fall outside the measured interval."""
    t_ns = time.time_ns()
    if processes is not None and stats_last:
        taken = snapshot([], processes, redis)
        taken.stats = [get_json(url + "/stats") for url in urls]
        return taken
    stats = [get_json(url + "/stats") for url in urls]
    if processes is None:  # a target: its own report of itself, if it gives one
        cpu_s = sum(s["cpu_user_s"] + s.get("cpu_system_s", 0.0) for s in stats) if stats else None
        rss = sum(s["rss_bytes"] for s in stats) if stats else None
        source = "the target's /stats" if stats else None
    else:
        cpu_s = rss = 0
        source = None
        for process in processes:
            seconds, source = cpu_seconds(process.pid)
            cpu_s += seconds
            rss += process.memory_info().rss
    queue_cpu_s = None if redis is None else redis.cpu_s()
    return Snapshot(t_ns, stats, cpu_s, rss, queue_cpu_s, source)


def check_target(cell: Cell, cell_dir: Path, url: str) -> dict[str, str]:
    """Verify a server the harness did not start. Problems with the client-facing protocol
    fail the cell; missing optional endpoints are written to verify.txt and returned."""
    parts = urlsplit(url)
    try:
        socket.create_connection(
            (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), timeout=5
        ).close()
    except OSError as exc:
        raise HarnessError(f"the target {url} does not answer: {exc.strerror or exc}") from None
    problems, missing = verify_target(cell.spec, url)
    lines = [f"problem: {p}" for p in problems] + [
        f"missing: {path} ({reason}); null: {OPTIONAL_ENDPOINTS[path][1]}"
        for path, reason in missing.items()
    ]
    if lines:
        (cell_dir / "verify.txt").write_text("\n".join(lines) + "\n")
    if problems:
        raise HarnessError(
            f"the target {url} does not speak the {cell.transport} protocol: {problems[0]} "
            f"({len(problems)} problem(s), see {cell_dir / 'verify.txt'})"
        )
    return missing


def unavailable_figures(missing: dict[str, str]) -> dict[str, str]:
    """The summary's figures a target cannot give, each with why (never invented)."""
    reasons = {}
    for path, fields in TARGET_FIGURES.items():
        if path in missing:
            reasons.update(dict.fromkeys(fields, f"the target has no {path} ({missing[path]})"))
    return reasons


TARGET_FIGURES = {
    "/stats": (
        "requests", "requests_per_delivery", "bytes_per_delivery", "bytes_out_per_delivery",
        "server_cpu_us_per_delivery", "server_cpu_percent", "server_rss_bytes",
        "server_rss_per_client_bytes",
    ),
    "/published": ("published", "expected", "lost", "publisher_lag_us"),
    "/time": ("clock_offset_us",),
}  # fmt: skip


def latency_summary(histogram) -> LatencySummary:
    count = histogram.get_total_count()
    if count == 0:
        return {
            "count": 0,
            "min": None,
            **{k: None for k in PERCENTILES},
            "max": None,
            "mean": None,
        }
    return {
        "count": count,
        "min": histogram.get_min_value(),
        **{key: histogram.get_value_at_percentile(p) for key, p in PERCENTILES.items()},
        "max": histogram.get_max_value(),
        "mean": round(histogram.get_mean_value(), 1),
    }


def locust_command(
    config: BenchConfig, cell: Cell, urls: list[str], cell_dir: Path, run_time_s: float
) -> list[str]:
    url = urls[0]
    spread = ["--server-urls", ",".join(urls)] if len(urls) > 1 else []
    return [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        "--headless", "--only-summary", "--reset-stats",
        "--host", url,
        "--users", str(cell.clients),
        "--spawn-rate", f"{config.spawn_rate:g}",
        "--run-time", f"{int(run_time_s) + 1}s",
        "--csv", str(cell_dir / "locust"),
        "--html", str(cell_dir / "locust.html"),
        "--transport", cell.transport,
        "--scenario", cell.scenario,
        "--send-rate", f"{cell.rate:g}",
        "--payload-bytes", str(cell.payload_bytes),
        "--client", cell.client or cell.spec.default_client,
        "--poll-interval", f"{cell.poll_interval or 0.5:g}",
        "--longpoll-timeout", f"{config.longpoll_timeout:g}",
        "--grace", f"{config.grace:g}",
        "--measure", f"{config.duration:g}",
        "--drain", f"{config.drain_s(cell):g}",
        "--pushpull-out", str(cell_dir),
        "--churn-every", f"{cell.churn_every:g}",
        "--churn-downtime", f"{cell.churn_downtime:g}",
        "--resume", "on" if cell.resume else "off",
        "--reconnect", "on" if cell.storm else "off",
        *spread,
    ] + workers_options(config, cell)  # fmt: skip


def workers_options(config: BenchConfig, cell: Cell) -> list[str]:
    if cell.loadgen_workers:  # workers from elsewhere join the master at a known address
        return [
            "--master", "--expect-workers", str(cell.loadgen_workers),
            "--expect-workers-max-wait", f"{config.workers_wait_s:g}",
            "--master-bind-host", config.master_host, "--master-bind-port", str(config.master_port),
        ]  # fmt: skip
    return master_options(cell.loadgen_procs) if cell.loadgen_procs > 1 else []


def master_options(procs: int) -> list[str]:
    """Locust master and workers on loopback, on a free port (not *:5557, which a second run or
    another host could reach)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    return [
        "--processes", str(procs),
        "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
        "--master-host", "127.0.0.1", "--master-port", port,
    ]  # fmt: skip


def tick_rate(cell: Cell) -> float:
    """The server's publish rate: --rate in broadcast; none in chat, where clients send."""
    return 0.0 if cell.scenario == "chat" else cell.rate


def workers_joined(log_path: Path, expected: int) -> str:
    """How many Locust workers had joined, from the master's log ("N of M connected")."""
    try:  # "N workers connected" as each joins, "N of M connected" while the master waits
        found = re.findall(
            r"(\d+) (?:of \d+ |workers )connected", log_path.read_text(errors="replace")
        )
    except OSError:
        found = []
    return f"{found[-1]} of {expected}" if found else f"0 of {expected}"


def wait_for(path: Path, process: Managed, deadline_s: float, what: str, workers: int = 0) -> dict:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        if not process.alive():
            if workers and "Gave up waiting for workers" in process.log_path.read_text(
                errors="replace"
            ):
                raise HarnessError(
                    f"{workers_joined(process.log_path, workers)} Locust workers joined within the "
                    "deadline (start each with: pushpull worker --master HOST:PORT)"
                )
            raise HarnessError(f"Locust exited before {what}: {process.log_tail()}")
        time.sleep(0.1)
    raise HarnessError(
        f"Locust did not reach {what} within {deadline_s:.0f} s: {process.log_tail()}"
    )


def wait_for_files(
    cell_dir: Path, count: int, locust: Managed, deadline_s: float = 15.0
) -> list[Path]:
    """The measurement files of all `count` Locust processes (workers may write after the
    master exits)."""
    deadline = time.monotonic() + deadline_s
    while len(files := sorted(cell_dir.glob("loadgen-*.json"))) < count:
        if time.monotonic() > deadline:
            raise HarnessError(
                f"{len(files)} of {count} Locust processes wrote measurements: {locust.log_tail()}"
            )
        time.sleep(0.1)
    return files


def exit_text(process: Managed) -> str:
    code = process.popen.returncode
    return f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"


def sleep_until(
    t_ns: int, tick: Callable[[float], None], locust: Managed, servers: list[Managed], phase: str
) -> None:
    """Sleep until t_ns, noticing within half a second a server or Locust that died."""
    started = time.monotonic()
    named = [(server_name(k, len(servers)), server) for k, server in enumerate(servers)]
    while (left := (t_ns - time.time_ns()) / 1e9) > 0:
        for name, process in [*named, ("Locust", locust)]:
            if not process.alive():
                raise HarnessError(
                    f"{name} exited ({exit_text(process)}) {time.monotonic() - started:.0f} s "
                    f"into the {phase}: {process.log_tail() or 'no log line'}"
                )
        tick(left)
        time.sleep(min(left, 0.5))


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


def server_name(index: int, count: int) -> str:
    return "server" if count == 1 else f"server {index + 1} of {count}"


def start_servers(
    config: BenchConfig, cell: Cell, cell_dir: Path, cpus: dict, channel: str | None
) -> tuple[list[Managed], list[str]]:
    """The cell's server processes (one, or several sharing the queue's stream), verified."""
    spec, servers, urls = cell.spec, [], []
    extra = [] if channel is None else ["--message-queue", cell.message_queue, "--queue-channel", channel]  # fmt: skip
    if cell.storm:
        extra.append("--admin")  # POST /admin/drop: every connection dropped at once
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


def run_cell(
    config: BenchConfig, cell: Cell, cell_dir: Path, cpus: dict, tick: Callable[[str, float], None]
) -> dict:
    """Measure one cell and return its summary (also written to cell_dir/summary.json)."""
    cell_dir.mkdir(parents=True)
    servers: list[Managed] = []
    locust = redis = channel = None
    unavailable: dict[str, str] = {}
    try:
        if cell.message_queue is not None:
            try:
                redis = Redis(cell.message_queue)
            except QueueUnavailable as exc:
                raise HarnessError(f"--message-queue: {exc}") from None
            channel = f"pushpull-{os.getpid()}-{time.time_ns()}"  # this cell's own keys
        if config.target is not None:  # a server the harness did not start
            url = config.target
            unavailable = unavailable_figures(check_target(cell, cell_dir, url))
            urls = [url]
            stats_urls = [] if "requests" in unavailable else urls
            processes = None
        else:
            servers, urls = start_servers(config, cell, cell_dir, cpus, channel)
            url, stats_urls = urls[0], urls
            processes = [psutil.Process(server.pid) for server in servers]
        # the window will be on the server's clock: its edges are waited for on ours, so that
        # the counters and /published are read when the server's clock has passed them
        to_server = server_clock_correction(url, unavailable)
        idle = snapshot(stats_urls, processes, redis)
        # The server's idle cost (publisher, hub; no clients), at the same rate and placement,
        # before Locust starts: CPU is counted in ns, so half a second will do. It starts a
        # moment after the verify step's probes have gone, and no /stats read falls inside.
        idle_start = idle_end = None
        if config.idle_s > 0:  # --idle 0: not measured (idle and marginal CPU are null)
            time.sleep(IDLE_SETTLE_S)
            idle_start = snapshot([], processes, redis)
            time.sleep(config.idle_s)
            idle_end = snapshot([], processes, redis)
        spawn_s = cell.clients / config.spawn_rate
        spawn_deadline = 30 + spawn_s * 3 + (config.workers_wait_s if cell.loadgen_workers else 0)
        run_time = spawn_deadline + config.grace + config.duration + config.drain_s(cell) + 10
        locust = Managed(
            "locust",
            locust_command(config, cell, urls, cell_dir, run_time),
            cell_dir / "locust.log",
            cpus.get("loadgen"),
            cwd=cell_dir,
        )
        window = wait_for(
            cell_dir / "window.json",
            locust,
            spawn_deadline,
            "the end of spawning",
            cell.loadgen_workers,
        )
        sleep_until(
            window["start_ns"] - to_server,
            lambda left: tick("warm-up", left), locust, servers, "warm-up",
        )  # fmt: skip
        start = snapshot(stats_urls, processes, redis)
        storm = None
        if cell.storm:
            storm = drop_everything(
                config, window, to_server, urls, processes, redis, tick, locust, servers
            )
        sleep_until(
            window["end_ns"] - to_server,
            lambda left: tick("measuring", left), locust, servers, "window",
        )  # fmt: skip
        end = snapshot(stats_urls, processes, redis, stats_last=True)
        published = last_quarter = None
        if "published" not in unavailable:
            published = get_json(
                url + f"/published?since={window['start_ns']}&until={window['end_ns']}"
            )
            quarter_ns = (window["end_ns"] - window["start_ns"]) // 4
            last_quarter = get_json(
                url + f"/published?since={window['end_ns'] - quarter_ns}&until={window['end_ns']}"
            )
        tick("collecting", 0)
        try:
            locust.popen.wait(timeout=config.drain_s(cell) + 30)
        except Exception:
            raise HarnessError(
                f"Locust did not finish after the window: {locust.log_tail()}"
            ) from None
        if (cell_dir / "workers-left.json").exists():
            left = json.loads((cell_dir / "workers-left.json").read_text())["workers"]
            raise HarnessError(
                f"{len(left)} of {cell.loadgen_workers} Locust workers left during the cell "
                f"({', '.join(left)}): their clients' deliveries are incomplete"
            )
        merged = merge_process_files(
            wait_for_files(cell_dir, config.loadgen_processes(cell), locust)
        )
    except (OSError, ValueError, psutil.Error) as exc:  # the server stopped answering, bad JSON
        if isinstance(exc, OSError) and (cannot_write := output_error(exc)) is not None:
            raise cannot_write from None
        for index, server in enumerate(servers):
            if not server.alive():
                raise HarnessError(
                    f"{server_name(index, len(servers))} exited ({exit_text(server)}): "
                    f"{server.log_tail() or 'no log line'}"
                ) from None
        tail = servers[0].log_tail() if servers else ""
        raise HarnessError(
            f"{type(exc).__name__}: {exc}{f' (server log: {tail})' if tail else ''}"
        ) from None
    finally:
        try:
            if locust is not None:
                locust.stop()
        finally:  # a second Ctrl-C while Locust stops still stops the servers
            for server in servers:
                server.stop()
            if redis is not None:
                with contextlib.suppress(Exception):
                    redis.forget(channel)
                    redis.close()
    write_json(
        cell_dir / "histograms.json",
        {name: merged["histograms"][name].encode().decode("ascii") for name in HISTOGRAMS},
    )
    write_json(
        cell_dir / "server-stats.json",
        {
            "idle": idle.stats[0] if idle.stats else None,
            "window_start": start.stats[0] if start.stats else None,
            "window_end": end.stats[0] if end.stats else None,
            "published": published,
            **(
                {"processes": {"idle": idle.stats, "window_start": start.stats, "window_end": end.stats}}
                if len(servers) > 1 else {}
            ),
        },
    )  # fmt: skip
    queue = None if redis is None else {"redis_version": redis.version}
    shared = [] if config.target else contention(cell, cpus)
    summary = summarize(
        config, cell, window, merged, published, idle, start, end, queue, unavailable,
        idle_start, idle_end,
    )  # fmt: skip
    summary["contention"] = shared
    if storm is not None:
        summary["recovery"] = storm_figures(storm, merged, start, end, window)
    summary["server_errors"] = (
        scan_logs({s.log_path.name: s.log_path for s in servers}) if servers else None
    )
    summary["loadgen_errors"] = scan_logs({locust.log_path.name: locust.log_path})
    write_json(cell_dir / "summary.json", summary)
    stalled = publisher_stalled(cell, config.duration, published, last_quarter)
    if stalled:
        raise HarnessError(stalled + server_error_text(summary["server_errors"]))
    return summary


def publisher_stalled(
    cell: Cell, duration_s: float, published: dict | None, last_quarter: dict | None
) -> str | None:
    """Why the cell is void because the server stopped publishing (its publisher died or hung),
    or None. In broadcast: fewer than half the ticks due in the window were published, or none
    in its last quarter when at least two were due there. A publisher that stops stops every
    client's stream, so the cell's figures would describe a broken server."""
    rate = tick_rate(cell)
    if published is None or rate <= 0 or rate * duration_s < 2:
        return None
    due = rate * duration_s
    if published["count"] < due / 2:
        return (
            f"the server's publisher stopped (or fell far behind): {published['count']} of the "
            f"{due:g} ticks due in the {duration_s:g} s window were published"
        )
    if last_quarter is not None and due / 4 >= 2 and last_quarter["count"] == 0:
        return (
            f"the server's publisher stopped: none of the {due / 4:g} ticks due in the last "
            f"{duration_s / 4:g} s of the window was published"
        )
    return None


def server_error_text(errors: dict | None) -> str:
    """'; server.log: <first error line> (+N more)', or '' when the servers logged none."""
    if not errors or not errors["count"]:
        return ""
    for name, found in errors["processes"].items():
        if found["count"]:
            more = errors["count"] - 1
            return f"; {name}: {found['first'][0]}" + (f" (+{more} more)" if more else "")
    return ""


def server_clock_correction(url: str, unavailable: dict) -> int:
    """What to add to this machine's clock to read the server's (pushpull/core/clock.py), as the
    load generator corrects its own; 0 when the server has no /time."""
    if "clock_offset_us" in unavailable:
        return 0
    try:
        return correction(*measure_offset(url))
    except (OSError, ValueError, KeyError) as exc:
        raise HarnessError(f"GET {url}/time: {exc}") from None


def drop_everything(
    config, window, to_server, urls, processes, redis, tick, locust, servers
) -> dict:
    """The storm: `config.storm_at_s` into the window, every server drops every client
    connection at once (POST /admin/drop); the clients come back as their libraries do."""
    sleep_until(
        window["start_ns"] + int(config.storm_at_s * 1e9) - to_server,
        lambda left: tick("before the drop", left), locust, servers, "window",
    )  # fmt: skip
    before = snapshot([], processes, redis)
    dropped = 0
    sent = time.time_ns()
    for url in urls:
        status, body = request_json(url + "/admin/drop", "POST", {})
        if status != 200:
            raise HarnessError(f"POST {url}/admin/drop answered {status}: {body}")
        dropped += body["dropped"]
    t_drop_ns = (sent + time.time_ns()) // 2 + to_server  # on the server's clock, as receipts are
    return {"t_drop_ns": t_drop_ns, "dropped": dropped, "snapshot": before}


STORM_SHARES = (50, 99, 100)


def storm_figures(storm: dict, merged: dict, start, end, window: dict) -> dict:
    """After the drop: how long until 50/99/100% of the dropped clients were welcomed again and
    had every missed event (seconds since the drop, null if not reached by the end), the
    recovery curves (time at each whole percent), and the server's CPU before and after."""
    t_drop = storm["t_drop_ns"]
    records = merged["recoveries"]
    count = len(records)

    def curve(index: int) -> list[float | None]:
        """Seconds after the drop by which k% of the dropped clients had got there, k = 0..100
        (None: that share never did within the window)."""
        times = sorted((r[index] - t_drop) / 1e9 for r in records if r[index] is not None)
        points: list[float | None] = []
        for k in range(101):
            needed = math.ceil(count * k / 100)
            if needed == 0:
                points.append(0.0)
            else:
                points.append(round(times[needed - 1], 4) if needed <= len(times) else None)
        return points

    back, caught = curve(1), curve(2)
    before, after = storm["snapshot"], end

    def cpu_percent(a, b):
        if a.cpu_s is None or b.cpu_s is None or b.t_ns <= a.t_ns:
            return None
        used = b.cpu_s - a.cpu_s
        if a.queue_cpu_s is not None and b.queue_cpu_s is not None:
            used += b.queue_cpu_s - a.queue_cpu_s
        return round(100 * used / ((b.t_ns - a.t_ns) / 1e9), 1)

    return {
        "t_drop_ns": t_drop,
        "dropped": storm["dropped"],  # connections the servers closed
        "clients_dropped": count,  # clients that saw their connection end and came back for it
        "never_back": sum(1 for r in records if r[1] is None),
        "never_caught_up": sum(1 for r in records if r[2] is None),
        "reconnected_s": {f"p{k}": back[k] for k in STORM_SHARES},
        "caught_up_s": {f"p{k}": caught[k] for k in STORM_SHARES},
        "curve": {"reconnected_s": back, "caught_up_s": caught},
        "server_cpu_percent_before": cpu_percent(start, before),
        "server_cpu_percent_after": cpu_percent(before, after),
        "after_s": round((window["end_ns"] - t_drop) / 1e9, 3),
    }


# A point where the load generator is saturated measures the client, not the server.
CLIENT_BOUND_CPU_PERCENT = 80.0  # any Locust process above this share of one core
CLIENT_BOUND_LOOP_LAG_US = 10_000  # or its 10 ms sleeps woke this late at p99


IDLE_SETTLE_S = 0.3  # after the verify probes closed


def idle_cpu_share(before: Snapshot | None, after: Snapshot | None) -> float | None:
    """The server side's CPU seconds per second with no client connected (between two
    snapshots taken before Locust starts; the first reads /stats before the CPU, the second
    reads no /stats, so no request of the harness falls inside), or None if not measured."""
    if (
        before is None
        or after is None
        or before.cpu_s is None
        or after.cpu_s is None
        or after.t_ns <= before.t_ns
    ):
        return None
    used = after.cpu_s - before.cpu_s
    if after.queue_cpu_s is not None and before.queue_cpu_s is not None:
        used += after.queue_cpu_s - before.queue_cpu_s
    return used / ((after.t_ns - before.t_ns) / 1e9)


def process_cpu_s(cpu: dict) -> float:
    """A load-generator process's CPU seconds in the window: nanosecond accounting when it
    has it (total_s), else user + system ticks."""
    return cpu["total_s"] if cpu.get("total_s") is not None else cpu["user_s"] + cpu["system_s"]


def process_cpu_percent(process: dict) -> float | None:
    cpu = process["cpu"]
    if not cpu or cpu["wall_s"] <= 0:
        return None
    return round(100 * process_cpu_s(cpu) / cpu["wall_s"], 1)


def bound_reasons(per_process: list[float | None], loop_lag: dict) -> list[str]:
    reasons = []
    busiest = max((p for p in per_process if p is not None), default=0.0)
    if busiest >= CLIENT_BOUND_CPU_PERCENT:
        reasons.append(
            f"a Locust process used {busiest:.0f}% of a core (limit {CLIENT_BOUND_CPU_PERCENT:.0f}%)"
        )
    if (loop_lag["p99"] or 0) >= CLIENT_BOUND_LOOP_LAG_US:
        reasons.append(
            f"Locust's event loop lagged {loop_lag['p99'] / 1000:.1f} ms at p99 (limit {CLIENT_BOUND_LOOP_LAG_US / 1000:.0f} ms)"
        )
    return reasons


def process_summary(process: dict) -> dict:
    """One load-generator process (a Locust worker): where it ran, its clock offset to the
    server, and whether it was the bottleneck, by the same rule as the cell's."""
    cpu = process_cpu_percent(process)
    lag = process.get("loop_lag_p99_us")
    clock = process["clock"]
    reasons = bound_reasons([cpu], {"p99": lag})
    return {
        "pid": process["pid"],
        **(process.get("host") or {"name": None, "cores": None, "cpu_model": None}),
        "clock_offset_us": None if clock["offset_ns"] is None else clock["offset_ns"] / 1000,
        "clock_uncertainty_us": None
        if clock["uncertainty_ns"] is None
        else clock["uncertainty_ns"] / 1000,
        "cpu_percent": cpu,
        "loop_lag_p99_us": lag,
        "client_bound": bool(reasons),
        "client_bound_reasons": reasons,
    }


def clock_offset(processes: list[dict]) -> dict:
    """The load generators' measured offsets to the server clock and the corrections applied
    (us); `offset` and `uncertainty` are those of the process with the largest offset."""
    clocks = [
        {key.removesuffix("_ns"): None if v is None else v / 1000 for key, v in p["clock"].items()}
        for p in processes
    ]
    worst = max(
        clocks, key=lambda c: abs(c["offset"]), default={"offset": None, "uncertainty": None}
    )
    return {"offset": worst["offset"], "uncertainty": worst["uncertainty"], "per_process": clocks}


def per(value: float | None, count: int, scale: float = 1.0) -> float | None:
    return None if value is None or count <= 0 else round(value * scale / count, 3)


def summarize(
    config: BenchConfig,
    cell: Cell,
    window: dict,
    merged: dict,
    published: dict | None,
    idle: Snapshot,
    start: Snapshot,
    end: Snapshot,
    queue: dict | None = None,
    unavailable: dict[str, str] | None = None,
    idle_start: Snapshot | None = None,
    idle_end: Snapshot | None = None,
) -> dict:
    """The cell's figures; those in `unavailable` (a target's missing endpoints) are null."""
    unavailable = unavailable or {}
    received = merged["received"]
    expected = None
    if published is not None:
        expected = expected_deliveries(
            merged["segments"], published["first_seq"], published["last_seq"]
        )
    wall_s = (end.t_ns - start.t_ns) / 1e9
    queue_cpu_s = None
    if end.queue_cpu_s is not None and start.queue_cpu_s is not None:
        queue_cpu_s = end.queue_cpu_s - start.queue_cpu_s
    server_cpu_s = None
    if end.cpu_s is not None and start.cpu_s is not None:  # the queue's CPU is the server's
        server_cpu_s = end.cpu_s - start.cpu_s + (queue_cpu_s or 0.0)
    stats = bool(end.stats)
    idle_cpu = idle_cpu_share(idle_start, idle_end)  # CPU seconds per second, no clients
    marginal_cpu_s = None
    if idle_cpu is not None and server_cpu_s is not None:
        marginal_cpu_s = max(0.0, server_cpu_s - idle_cpu * wall_s)
    requests = end.total("requests") - start.total("requests") if stats else None
    bytes_out = end.total("bytes_written") - start.total("bytes_written") if stats else None
    bytes_in = end.total("bytes_read") - start.total("bytes_read") if stats else None
    per_process = [process_cpu_percent(p) for p in merged["processes"]]
    loadgen_cpu_s = sum(process_cpu_s(p["cpu"]) for p in merged["processes"] if p["cpu"])
    loop_lag = latency_summary(merged["histograms"]["loop_lag"])
    polls = merged["polls"]
    lags = sorted(published["publisher_lag_us"]) if published is not None else []
    counts_requests = cell.spec.counts_requests and requests is not None
    rss_growth = None
    if start.rss_bytes is not None and idle.rss_bytes is not None:
        rss_growth = start.rss_bytes - idle.rss_bytes
    clock = clock_offset(merged["processes"])
    if "clock_offset_us" in unavailable:
        clock = {"offset": None, "uncertainty": None, "per_process": clock["per_process"]}
    return CellSummary(
        transport=cell.transport,
        role=cell.spec.role,
        clients=cell.clients,
        rate=cell.rate,
        poll_interval=cell.poll_interval,
        client=cell.client,
        repeat=cell.repeat,
        scenario=cell.scenario,
        payload_bytes=cell.payload_bytes,
        sent=merged["sent"],
        duration_s=config.duration,
        name=cell.name,
        window={"start_ns": window["start_ns"], "end_ns": window["end_ns"]},
        clients_connected=merged["clients_at_window_start"],
        latency_us=latency_summary(merged["histograms"]["latency"]),
        latency_ci_us=latency_intervals(merged["per_event"]),
        latency_from_schedule_us=latency_summary(merged["histograms"]["from_schedule"]),
        warmup_latency_us=latency_summary(merged["histograms"]["warmup"]),
        published=published["count"] if published is not None else None,
        expected=expected,
        received=received,
        lost=expected - received if expected is not None else None,
        duplicates=merged["duplicates"],
        reordered=merged["reordered"],
        errors=merged["errors"],
        requests=requests if counts_requests else None,
        requests_per_delivery=per(requests, received) if counts_requests else None,
        empty_poll_share=per(merged["empty_polls"], polls) if polls else None,
        bytes_per_delivery=per(bytes_out + bytes_in, received) if stats else None,
        bytes_out_per_delivery=per(bytes_out, received),
        server_cpu_us_per_delivery=per(server_cpu_s, received, 1e6),
        server_cpu_percent=(
            round(100 * server_cpu_s / wall_s, 1)
            if server_cpu_s is not None and wall_s > 0
            else None
        ),
        server_rss_bytes=end.rss_bytes,
        server_rss_per_client_bytes=per(rss_growth, cell.clients),
        loadgen_cpu_percent=round(sum(p for p in per_process if p is not None), 1),
        loadgen_cpu_percent_per_process=per_process,
        loadgen_cpu_us_per_delivery=per(loadgen_cpu_s, received, 1e6),
        loadgen_procs=cell.loadgen_procs,
        loadgen_workers=cell.loadgen_workers,
        loadgen_processes=[process_summary(p) for p in merged["processes"]],
        loadgen_loop_lag_us={k: loop_lag[k] for k in ("p50", "p99", "max")},
        client_bound=bool(bound_reasons(per_process, loop_lag)),
        client_bound_reasons=bound_reasons(per_process, loop_lag),
        clock_offset_us=clock,
        server_cpu_source=end.cpu_source,
        server_idle_cpu_percent=None if idle_cpu is None else round(100 * idle_cpu, 2),
        server_marginal_cpu_us_per_delivery=per(marginal_cpu_s, received, 1e6),
        server_procs=cell.server_procs,
        message_queue=None if cell.message_queue is None else redacted(cell.message_queue),
        queue=queue,
        queue_cpu_us_per_delivery=per(queue_cpu_s, received, 1e6),
        queue_cpu_share=(
            round(queue_cpu_s / server_cpu_s, 3)
            if queue_cpu_s is not None and server_cpu_s
            else None
        ),
        publisher_lag_us={
            "p50": lags[len(lags) // 2] if lags else None,
            "p99": lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else None,
            "max": lags[-1] if lags else None,
        },
        target=config.target,
        unavailable=unavailable or None,
        **churn_figures(cell, merged, published),
    ).to_json()


def churn_figures(cell: Cell, merged: dict, published: dict | None) -> dict:
    """What clients that came and went lost and how fast they were back (docs/results.md)."""
    figures: dict = {
        "churn_every": cell.churn_every,
        "churn_downtime": cell.churn_downtime,
        "resume": cell.resume,
        "storm": cell.storm,
        "reconnects": merged["reconnects"],
    }
    if not (cell.churn_every or cell.storm):
        return figures
    owed = lost = None
    if published is not None:
        owed, lost = gap_figures(merged["gaps"], published["first_seq"], published["last_seq"])
    hist = merged["histograms"]
    connect, catchup = latency_summary(hist["connect"]), latency_summary(hist["caught_up"])
    return figures | {
        "gap_owed": owed,
        "gap_lost": lost,
        "gap_lost_share": round(lost / owed, 4) if owed else None,
        "connect_us": {k: connect[k] for k in ("p50", "p99", "max")},
        "catchup_us": {k: catchup[k] for k in ("p50", "p99", "max")},
        "caught_up": catchup["count"],
        "catchup_latency_us": latency_summary(hist["catchup"]),
    }
