"""End to end: a tiny real sweep (servers, Locust, charts), and what Ctrl-C or a crash leaves."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from hdrh.histogram import HdrHistogram

from pushpull.core import transports
from pushpull.core.schema import SCHEMA_VERSION
from pushpull.harness.nginx import find_nginx
from tests.conftest import (
    QUICK_CELL,
    ROOT,
    chart_size,
    latency_problems,
    log_problems,
    publish_problems,
    pushpull,
)

LATENCY_KEYS = {"count", "min", "p50", "p90", "p99", "p999", "max"}
CELL_KEYS = {
    "transport", "clients", "rate", "poll_interval", "duration_s", "latency_us", "expected",
    "received", "lost", "duplicates", "requests_per_delivery", "server_cpu_us_per_delivery",
    "loadgen_cpu_percent",
}  # fmt: skip


def run_dir_of(out: Path) -> Path:
    latest = out / "latest"
    assert latest.is_symlink(), "results/latest points at the newest run"
    return latest.resolve()


def test_smoke_sweep_produces_summary_and_charts(reference_run):
    """Every transport of the registry at 2 and 4 clients (tests/conftest.py reference_run)."""
    result, run = reference_run.result, reference_run.path
    names = list(transports.NAMES)
    assert run_dir_of(run.parent) == run and "-" in run.name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["cores"] == os.cpu_count() and manifest["packages"]["locust"]
    assert manifest["arguments"]["clients"] == [2, 4]
    assert manifest["arguments"]["drain"] == 0.3 and manifest["arguments"]["grace"] == 0.5
    assert manifest["arguments"]["idle_s"] == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["schema_version"] == SCHEMA_VERSION and summary["complete"] is True
    cells = summary["cells"]
    assert sorted((c["transport"], c["clients"]) for c in cells) == sorted(
        (t, n) for t in names for n in (2, 4)
    )
    for cell in cells:
        spec = transports.get(cell["transport"])
        assert CELL_KEYS <= set(cell), CELL_KEYS - set(cell)
        assert set(cell["latency_us"]) >= LATENCY_KEYS
        # rate 4/s for a 2 s window: 8 events to each client, none lost or duplicated
        assert cell["expected"] >= cell["clients"] * 6, cell
        assert cell["lost"] == 0 and cell["duplicates"] == 0 and cell["reordered"] == 0, cell
        assert cell["received"] == cell["latency_us"]["count"] == cell["expected"]
        lat = cell["latency_us"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"] < 5_000_000
        ci = cell["latency_ci_us"]  # over the window's ~8 events, each a whole burst
        assert ci["events"] >= 6
        for stat in ("p50", "p90", "p99", "p999"):
            assert lat["min"] <= ci[stat][0] <= lat[stat] <= ci[stat][1] <= lat["max"], stat
        assert (cell["requests_per_delivery"] is None) == (not spec.counts_requests), cell
        if spec.role == transports.POLL:  # a poll brings one delivery, or comes back empty
            assert 0.5 <= cell["requests_per_delivery"] <= 20, cell
        assert (cell["poll_interval"] is None) == ("poll_interval" not in spec.dimensions)
        # server CPU per delivery, the idle publisher's share included at 8-16 deliveries/s:
        # measured 139-1540 us here (WebSocket at 4 clients to short-poll at 2); a reading
        # off by a factor of ten (ticks for ns, ms for us, a CPU not counted) fails
        cpu = cell["server_cpu_us_per_delivery"]
        assert 20 < cpu < 10_000, cell
        # --idle 0: no idle baseline, so no marginal figure (test_two_locust_processes has one)
        assert (
            cell["server_idle_cpu_percent"] is cell["server_marginal_cpu_us_per_delivery"] is None
        )
        assert 0 < cell["loadgen_cpu_percent"] < 100 * (os.cpu_count() or 1), cell
        folder = run / cell["name"]
        histograms = json.loads((folder / "histograms.json").read_text())
        decoded = HdrHistogram.decode(histograms["latency"].encode("ascii"))
        assert decoded.get_total_count() == cell["received"], "the file holds the cell's count"
        rows = list(csv.DictReader((folder / "locust_stats.csv").open()))
        delivered = {r["Name"]: int(r["Request Count"]) for r in rows}
        # Locust's own table: a row per delivery for push, per answer that brought events for
        # polls, added once a second (the last second's may be missing; the warm-up's are in)
        counted = delivered.get(cell["transport"], 0)
        assert cell["received"] / 8 <= counted <= 3 * cell["received"], (delivered, cell)
        assert "<html" in (folder / "locust.html").read_text()[:2000].lower()
        assert json.loads((folder / "server.log").read_text().splitlines()[0])["pid"] > 0
    assert not latency_problems(cells), latency_problems(cells)  # fails with Nagle left on
    assert not log_problems(cells), log_problems(cells)
    assert not publish_problems(cells), publish_problems(cells)
    for chart in ("latency_vs_clients.png", "latency_distribution.png"):
        chart_size(run / "charts" / chart)
    table = (run / "summary.md").read_text()
    assert all(f"| {name} " in table for name in names), table
    read = f"({2 * len(names)} cell(s) read)"  # every transport at 2 and 4 clients
    assert f"No traceback or error line in any server or Locust log {read}." in table
    assert "charts in" in result.stdout


STARTED: list[subprocess.Popen] = []  # benches started in the background by this module


def start_bench(out: Path, *args: str) -> subprocess.Popen:
    """`pushpull bench` in the background; stopped after the test whatever the test did (a
    failed assert must not leave a bench holding the run lock for the rest of the session)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pushpull.cli", "bench", "--out", str(out), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    STARTED.append(process)
    return process


@pytest.fixture(autouse=True)
def stop_started_benches():
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()  # its servers and Locust die with it (pushpull/core/child.py)
        with contextlib.suppress(Exception):
            process.communicate(timeout=30)


def wait_for_cells(
    out: Path, count: int, process: subprocess.Popen, timeout: float
) -> list[psutil.Process]:
    """Wait until `count` cells are in summary.json and the next cell's processes run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            cells = json.loads((out / "latest" / "summary.json").read_text())["cells"]
        except (OSError, ValueError):
            cells = []
        children = psutil.Process(process.pid).children(recursive=True)
        if len(cells) >= count and len(children) >= 2:
            return children
        time.sleep(0.2)
    pytest.fail(f"no {count} finished cell(s) within {timeout} s")


def assert_all_gone(processes: list[psutil.Process], out: Path, timeout: float = 15) -> None:
    gone, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"left behind: {[p.cmdline() for p in alive]}"
    strays = [
        p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])
    ]
    assert not strays, f"processes still using {out}: {[p.info['cmdline'] for p in strays]}"


SWEEP = (
    "--clients",
    "2",
    "--transports",
    "longpoll,socketio,shortpoll",
    "--duration",
    "1",
    *QUICK_CELL,
)


@pytest.mark.slow
@pytest.mark.parametrize("signals", [["SIGINT"], ["SIGHUP"], ["SIGINT", "SIGINT"]])
def test_ctrl_c_keeps_finished_cells_and_leaves_nothing_running(tmp_path, signals):
    """Ctrl-C, a closed terminal (SIGHUP), or a second Ctrl-C during the teardown."""
    process = start_bench(tmp_path, *SWEEP)
    children = wait_for_cells(tmp_path, 1, process, timeout=120)
    for name in signals:
        process.send_signal(getattr(signal, name))
        time.sleep(0.3)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert_all_gone(children, tmp_path)
    run = run_dir_of(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["complete"] is False
    assert len(summary["cells"]) >= 1 and summary["cells"][0]["transport"] == "longpoll"
    # what was measured is drawn (unless a second Ctrl-C said: stop now), and can be redrawn
    if len(signals) == 1:
        chart_size(run / "charts" / "latency_vs_clients.png")
    replot = pushpull("plot", str(run))
    assert replot.returncode == 0, replot.stderr


def command_of(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # gone (or a zombie) since it was listed
        return ""


@pytest.mark.slow
def test_a_killed_harness_leaves_no_server_or_locust_behind(tmp_path):
    """kill -9 mid-sweep, with Locust as a master and two workers and the clients behind the
    network emulator and nginx: the server, nginx, the emulator, the master and the workers go."""
    nginx = ["--proxy", "nginx"] if find_nginx() is not None else []
    process = start_bench(
        tmp_path, *SWEEP, "--loadgen-procs", "2", "--network", "rtt=10ms", *nginx, "--no-plot"
    )
    wait_for_cells(tmp_path, 1, process, timeout=120)
    deadline = time.monotonic() + 60
    while True:  # with --processes 2 Locust forks two workers: its command line, three times
        children = psutil.Process(process.pid).children(recursive=True)
        locusts = [c for c in children if "--processes" in command_of(c)]
        if len(locusts) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    relays = [c for c in children if "pushpull.harness.relay" in command_of(c)]
    proxies = [c for c in children if c.name() == "nginx"]
    assert len(locusts) == 3 and len(relays) == 1 and len(proxies) == len(nginx) // 2, [
        command_of(c) for c in children
    ]
    assert len(children) == 5 + len(proxies), [command_of(c) for c in children]
    process.send_signal(signal.SIGKILL)  # a crash: no finally blocks run
    process.communicate(timeout=30)
    assert_all_gone(children, tmp_path)
    summary = json.loads((run_dir_of(tmp_path) / "summary.json").read_text())
    assert len(summary["cells"]) >= 1, "finished cells were written before the crash"


def ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_ipv6_host_works_end_to_end(tmp_path):
    """--host ::1: servers bind it, URLs bracket it, verify, Locust and the clients reach it."""
    result = pushpull(
        "bench", "--host", "::1", "--transports", "websocket,sse", "--clients", "2",
        "--duration", "1", "--grace", "0.5", "--drain", "0.5", "--idle", "0", "--no-plot", "--out", str(tmp_path), timeout=200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    cells = json.loads((run_dir_of(tmp_path) / "summary.json").read_text())["cells"]
    assert [c["transport"] for c in cells] == ["websocket", "sse"]
    for cell in cells:
        assert cell["received"] == cell["expected"] > 0 and cell["lost"] == 0 and not cell["errors"]


@pytest.mark.slow
def test_a_server_crash_fails_one_cell_and_the_sweep_goes_on(tmp_path):
    process = start_bench(
        tmp_path, "--clients", "2", "--transports", "longpoll,websocket", "--duration", "3",
        "--grace", "0.5", "--drain", "0.5", "--idle", "0",
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*/longpoll-*/window.json")):  # the first cell's window opened
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    servers = [
        p for p in psutil.Process(process.pid).children(recursive=True)
        if "servers.longpoll" in " ".join(p.cmdline())
    ]  # fmt: skip
    servers[-1].kill()
    killed = time.monotonic()
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "server exited (killed by signal 9)" in errors[0], stderr
    run = run_dir_of(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"] is True
    (failed,) = summary["failed"]
    assert failed["transport"] == "longpoll" and "killed by signal 9" in failed["reason"]
    kept = (run / failed["name"] / "server.log").read_text().splitlines()  # the cell's files stay
    assert json.loads(kept[0])["pid"] == servers[-1].pid, kept
    (cell,) = summary["cells"]
    assert cell["transport"] == "websocket" and cell["lost"] == 0
    report = (run / "report.html").read_text()
    assert "Failed cells" in report and "killed by signal 9" in report
    assert time.monotonic() - killed < 120


def test_capacity_goes_on_to_the_next_transport_after_a_failed_step():
    from pushpull.harness.capacity import CapacitySearch
    from pushpull.harness.config import BenchConfig

    search = CapacitySearch(
        BenchConfig(clients=[10], transports=["longpoll", "sse"]), 250, 10, 10, 50
    )
    first = search.next_cell([])
    assert (first.transport, first.clients) == ("longpoll", 10)
    search.failed(first, "server exited (killed by signal 9)")
    following = search.next_cell([])
    assert (following.transport, following.clients) == ("sse", 10)
    result = search.results["longpoll"]
    assert result["stopped_at"] == 10 and "killed by signal 9" in result["reason"]
    assert result["capacity"] is None


@pytest.mark.slow
def test_a_second_run_refuses_while_one_measures(tmp_path):
    first = start_bench(
        tmp_path / "a", "--clients", "2", "--transports", "longpoll", "--duration", "30"
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "a" / "latest" / "manifest.json").exists():
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.1)
        second = pushpull("bench", "--clients", "2", "--transports", "websocket",
                          "--out", str(tmp_path / "b"), timeout=60)  # fmt: skip
        assert second.returncode == 1 and "Traceback" not in second.stderr
        (line,) = second.stderr.strip().splitlines()
        assert "another pushpull run is measuring" in line and f"pid {first.pid}" in line
        assert str(run_dir_of(tmp_path / "a")) in line and "--allow-concurrent" in line
        assert not (tmp_path / "b").exists(), "nothing was created or started"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


@pytest.mark.slow
def test_two_locust_processes_end_to_end(tmp_path):
    """--loadgen-procs 2: Locust's master and a worker on a free loopback port, histograms
    merged exactly, every delivery accounted for."""
    result = pushpull(
        "bench", "--transports", "websocket", "--clients", "6", "--loadgen-procs", "2",
        "--duration", "2", "--grace", "0.5", "--drain", "0.5", "--no-plot", "--out", str(tmp_path),
        timeout=200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    run = run_dir_of(tmp_path)
    (cell,) = json.loads((run / "summary.json").read_text())["cells"]
    assert cell["loadgen_procs"] == 2 and len(cell["loadgen_cpu_percent_per_process"]) == 2
    assert len(list((run / cell["name"]).glob("loadgen-*.json"))) == 2
    assert (
        cell["clients_connected"] == 6
        and cell["lost"] == 0
        and cell["received"] == cell["expected"] > 0
    )
    locust_log = (run / cell["name"] / "locust.log").read_text()
    assert "5557" not in locust_log
    # each Locust process lifts its open-file limit to the hard one and says so
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert [p["nofile"] for p in cell["loadgen_processes"]] == [hard, hard], cell
    assert locust_log.count(f"open-file limit {hard}") == 3, locust_log[:2000]  # master, workers
    # the idle baseline (--idle's default 0.5 s): the publisher alone costs a little of a core,
    # and the marginal cost per delivery is what the clients added on top of it
    assert 0 < cell["server_idle_cpu_percent"] < 50, cell["server_idle_cpu_percent"]
    marginal = cell["server_marginal_cpu_us_per_delivery"]
    assert 0 <= marginal <= cell["server_cpu_us_per_delivery"], cell


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (as root; skipped elsewhere), unmounted afterwards."""
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("fill", [False, True])
def test_a_full_disk_is_one_line_and_leaves_valid_results(small_disk, fill):
    if fill:  # nothing can be written at all
        with contextlib.suppress(OSError), open(small_disk / "filler", "wb") as filler:
            filler.write(b"x" * 4 * 2**20)
    result = pushpull(
        "bench", "--transports", "longpoll", "--clients", "2", "--duration", "1",
        "--out", str(small_disk), timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("pushpull bench: error: cannot write ") and str(small_disk) in line
    assert "No space left on device" in line or "MB free" in line
    for summary in small_disk.glob("*/summary.json"):
        json.loads(summary.read_text())  # whatever was written is valid
    assert not [p for p in small_disk.rglob(".*.tmp")], "no stray temp files"


def test_a_server_fault_fails_the_cell_and_is_named_in_the_results(tmp_path):
    """A publisher that dies (PUSHPULL_FAULT_PUBLISHER_DIES_AFTER, a fault only tests set, as a
    fan-out bug once killed the WebSocket server's) stops every client's stream: the harness
    reads the server's log, records the traceback in server_errors, and fails the cell with the
    exception's line in its reason (tests/test_report.py checks how a report shows such errors
    in a cell that did not fail)."""
    result = pushpull(
        "bench", "--transports", "websocket,sse", "--clients", "2", "--rate", "10",
        "--duration", "2", "--grace", "0.5", "--drain", "0.5", "--idle", "0", "--out", str(tmp_path),
        env={**os.environ, "PUSHPULL_FAULT_PUBLISHER_DIES_AFTER": "3"}, timeout=200,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr + result.stdout
    run = run_dir_of(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["cells"] == [] and [f["transport"] for f in summary["failed"]] == [
        "websocket", "sse"
    ]  # fmt: skip
    for failed in summary["failed"]:
        assert (
            "the server's publisher stopped (or fell far behind): 0 of the 20 ticks"
            in (failed["reason"])
        ), failed
        assert "server.log: RuntimeError: PUSHPULL_FAULT_PUBLISHER_DIES_AFTER=3" in failed["reason"]
        cell = json.loads((run / failed["name"] / "summary.json").read_text())
        errors = cell["server_errors"]
        assert errors["count"] == 1 and errors["processes"]["server.log"]["count"] == 1, errors
        assert cell["loadgen_errors"]["count"] == 0, cell["loadgen_errors"]
    stderr = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(stderr) == 2 and all("publisher stopped" in line for line in stderr), stderr
    assert "Traceback" not in result.stderr
