"""Run every cell of a sweep into one immutable run folder, writing results as each cell finishes,
so an interrupted or crashed sweep keeps (and can plot) everything it measured.

    results/<UTC timestamp>-<git short sha>/
        manifest.json   summary.json   <cell>/{summary.json, histograms.json, locust_*.csv, ...}
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from pushpull.core import tls
from pushpull.core.files import write_json
from pushpull.core.schema import SCHEMA_VERSION
from pushpull.harness import certs
from pushpull.harness.cell import run_cell
from pushpull.harness.config import BenchConfig, Cell
from pushpull.harness.manifest import build_manifest, new_run_dir, point_latest
from pushpull.harness.procs import HarnessError, Managed, OutputError, output_error
from pushpull.harness.runlock import RunLock


def cpu_placement(pin: bool) -> dict:
    """Server and load generator on disjoint cores when there are at least two."""
    available = sorted(os.sched_getaffinity(0))
    if not pin or len(available) < 2:
        return {"pinned": False, "server": None, "loadgen": None, "available": available}
    return {
        "pinned": True,
        "server": available[:1],
        "loadgen": available[1:],
        "available": available,
    }


class Progress:
    """One line per phase change; on a terminal, a live countdown on that line."""

    def __init__(self, cells: list[Cell] | None, config: BenchConfig, stream=sys.stdout):
        self.stream = stream
        self.live = stream.isatty()
        self.total = "?" if cells is None else len(cells)
        self.config = config
        self.remaining_s = {cell: config.estimated_cell_s(cell) for cell in cells or []}
        self.index = 0
        self.cell: Cell | None = None
        self.phase = ""

    def start(self, index: int, cell: Cell) -> None:
        self.index, self.cell, self.phase = index, cell, ""

    def tick(self, phase: str, left_s: float) -> None:
        later = sum(s for c, s in self.remaining_s.items() if c != self.cell)
        text = f"[{self.index}/{self.total}] {self.cell.label()}: {phase}"
        if left_s > 0:
            text += f", {left_s:.0f} s left"
        if self.remaining_s:
            text += f" (sweep ~{format_duration(later + left_s)} to go)"
        if self.live:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif phase != self.phase:
            print(text, file=self.stream, flush=True)
        self.phase = phase

    def failed(self, cell: Cell) -> None:
        self.remaining_s.pop(cell, None)
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def done(self, cell: Cell, line: str) -> None:
        self.remaining_s.pop(cell, None)
        if self.live:
            self.stream.write("\r\033[K")
        print(f"[{self.index}/{self.total}] {line}", file=self.stream, flush=True)


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes}:{secs:02d}"


def result_line(summary: dict) -> str:
    lat = summary["latency_us"]

    def ms(value):
        return "-" if value is None else f"{value / 1000:.1f}"

    text = (
        f"p50 {ms(lat['p50'])} ms, p99 {ms(lat['p99'])} ms, "
        f"lost {summary['lost']}/{summary['expected']}, dup {summary['duplicates']}"
    )
    if summary["requests_per_delivery"] is not None:
        text += f", {summary['requests_per_delivery']:.2f} req/delivery"
    if summary["server_cpu_us_per_delivery"] is not None:
        text += f", server {summary['server_cpu_us_per_delivery']:.0f} us CPU/delivery"
    if summary["client_bound"]:
        text += " [CLIENT-BOUND: " + "; ".join(summary["client_bound_reasons"]) + "]"
    return text


MIN_FREE_BYTES = 20 * 2**20  # a cell writes a few MB (Locust's CSVs and HTML, logs, histograms)


def check_free_space(run_dir: Path) -> None:
    """Stop before a cell that the disk could not hold, rather than in the middle of it."""
    free = shutil.disk_usage(run_dir).free
    if free < MIN_FREE_BYTES:
        raise OutputError(
            f"cannot write {run_dir}: only {free / 2**20:.1f} MB free on its disk "
            f"(a cell needs about {MIN_FREE_BYTES / 2**20:.0f} MB)"
        )


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def measure_floor(run_dir: Path, cpus: dict, count: int = 300) -> dict | None:
    """Round trip of a minimal websocket echo (pushpull/harness/echo.py), server and client placed like
    the cells' server and load generator. None (with the reason logged) if it cannot run."""
    log = run_dir / "floor"
    log.mkdir()
    server = client = None
    try:
        server = Managed(
            "echo",
            [sys.executable, "-m", "pushpull.harness.echo", "serve"],
            log / "echo-server.log",
            cpus["server"],
        )
        deadline = time.monotonic() + 15
        while not server.log_path.read_text().strip():
            if time.monotonic() > deadline or not server.alive():
                return None
            time.sleep(0.05)
        port = json.loads(server.log_path.read_text().splitlines()[0])["port"]
        client = Managed(
            "echo-client",
            [
                sys.executable,
                "-m",
                "pushpull.harness.echo",
                "measure",
                "127.0.0.1",
                str(port),
                str(count),
            ],
            log / "echo-client.log",
            cpus["loadgen"],
        )
        client.popen.wait(timeout=60)
        result = json.loads(client.log_path.read_text().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None
    finally:
        for process in (client, server):
            if process is not None:
                process.stop()
    rtt = result["rtt_us"]
    return {"websocket_echo_rtt_us": rtt, "one_way_us": rtt["p50"] / 2, "count": result["count"]}


def run_sweep(config: BenchConfig, pin: bool = True, command: str = "bench") -> tuple[int, Path]:
    """Every cell of the configuration, in order. Returns (exit status, run folder): 0 done,
    1 a run failure, 130 interrupted."""
    cells = config.cells()
    pending = iter(cells)
    return run_cells(config, pin, lambda _done: next(pending, None), cells, command)


def run_cells(
    config: BenchConfig,
    pin: bool,
    next_cell: Callable[[list[dict]], Cell | None],
    planned: list[Cell] | None = None,
    command: str = "bench",
    extra_manifest: dict | None = None,
    prepare: Callable[[Path], None] | None = None,
    on_failure: Callable[[Cell, str], None] | None = None,
) -> tuple[int, Path]:
    """Measure cells into a new run folder until `next_cell(summaries so far)` returns None.
    `planned` (when known in advance) drives the progress estimate. A cell that fails (its
    server or Locust died, or would not start) is recorded under "failed" with the reason and
    `on_failure(cell, reason)` is told; the sweep goes on and ends with status 1."""
    lock = RunLock.acquire(config.allow_concurrent)  # before anything is created or started
    try:
        return _run_cells(
            config, pin, next_cell, planned, command, extra_manifest, prepare, on_failure, lock
        )
    finally:
        lock.release()


def _run_cells(config, pin, next_cell, planned, command, extra_manifest, prepare, on_failure, lock):
    run_dir, cpus, manifest, summary = open_run(config, pin, command, extra_manifest, lock)
    if prepare is not None:
        prepare(run_dir)
    progress = Progress(planned, config)
    announce(config, planned, run_dir)
    previous_term = signal.signal(signal.SIGTERM, raise_interrupt)
    previous_hup = signal.signal(signal.SIGHUP, raise_interrupt)  # a closed terminal: the same
    status = 0
    try:
        manifest["floor"] = measure_floor(run_dir, cpus)
        write_json(run_dir / "manifest.json", manifest)
        measure_cells(
            config, next_cell, command, on_failure, run_dir, cpus, manifest, summary, progress
        )
        summary["complete"] = True
        status = 1 if summary["failed"] else 0
    except KeyboardInterrupt:
        summary["interrupted"] = True
        status = 130
        print(
            f"\npushpull: interrupted; {len(summary['cells'])} finished cell(s) kept in {run_dir}",
            file=sys.stderr,
        )
    except HarnessError as exc:
        summary["error"] = str(exc)
        status = 1
        print(f"\npushpull {command}: error: {exc}", file=sys.stderr)
    except OSError as exc:  # writing the run folder failed (a full disk, say)
        cannot_write = output_error(exc) or exc
        summary["error"] = str(cannot_write)
        status = 1
        print(f"\npushpull {command}: error: {cannot_write}", file=sys.stderr)
    except Exception as exc:  # a bug: keep the results, put the traceback in the run folder
        summary["error"] = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):
            (run_dir / "error.log").write_text(traceback.format_exc())
        status = 1
        print(
            f"\npushpull {command}: internal error: {type(exc).__name__}: {exc} (traceback in {run_dir / 'error.log'})",
            file=sys.stderr,
        )
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGHUP, previous_hup)
        summary["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            write_json(run_dir / "summary.json", summary)
        except OSError:
            pass  # the disk is full: the summary written after the last cell stays valid
    return status, run_dir


def open_run(config, pin, command, extra_manifest, lock) -> tuple[Path, dict, dict, dict]:
    """The run folder (results/latest points at it), its manifest and its empty summary."""
    placement = cpu_placement(pin)
    run_dir = new_run_dir(config.out).resolve()
    lock.describe(run_dir, command)
    point_latest(run_dir)
    cpus = {"server": set(placement["server"] or []), "loadgen": set(placement["loadgen"] or [])}
    if any(config.tls) or config.tls_files is not None:
        trust_run_ca(config, run_dir)
    manifest = build_manifest(config.to_json(), placement)
    manifest["command"] = command
    manifest["concurrent_with"] = lock.concurrent_with  # another run measuring at the same time
    manifest["message_queue"] = config.queue_info or None  # URL without credentials, Redis version
    manifest.update(extra_manifest or {})
    write_json(run_dir / "manifest.json", manifest)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "run": run_dir.name,
        "complete": False,
        "interrupted": False,
        "error": None,
        "cells": [],
        "failed": [],
        "concurrent_with": lock.concurrent_with,
    }
    write_json(run_dir / "summary.json", summary)
    return run_dir, cpus, manifest, summary


def trust_run_ca(config: BenchConfig, run_dir: Path) -> None:
    """The run's certificates (the user's, or a CA made for the run in tls/), and this process
    trusting that CA alone: the harness's reads and probes verify the servers as clients do."""
    if config.target is not None:  # its CA: --tls-ca, or the system's store
        tls.trust(config.tls_files.ca if config.tls_files else None)
        return
    if config.tls_files is None:
        hosts = certs.address_names([config.host, config.master_host])
        config.tls_files = certs.make(run_dir / "tls", hosts)
    tls.trust(config.tls_files.ca)


def announce(config: BenchConfig, planned: list[Cell] | None, run_dir: Path) -> None:
    if planned is not None:
        estimate = sum(config.estimated_cell_s(c) for c in planned)
        print(
            f"pushpull: {len(planned)} cell(s), about {format_duration(estimate)}; results in {run_dir}",
            flush=True,
        )
    else:
        print(f"pushpull: results in {run_dir}", flush=True)


def measure_cells(
    config, next_cell, command, on_failure, run_dir, cpus, manifest, summary, progress
):
    """Each cell in turn; the summary is rewritten after every one, so a crash or Ctrl-C
    loses nothing already measured. A failed cell is recorded and the sweep goes on."""
    while (cell := next_cell(summary["cells"])) is not None:
        progress.start(len(summary["cells"]) + len(summary["failed"]) + 1, cell)
        check_free_space(run_dir)
        try:
            cell_summary = run_cell(config, cell, run_dir / cell.name, cpus, progress.tick)
        except OutputError:
            raise
        except HarnessError as exc:  # this cell failed; its files stay, the sweep goes on
            summary["failed"].append({**cell.as_dict(), "name": cell.name, "reason": str(exc)})
            write_json(run_dir / "summary.json", summary)
            progress.failed(cell)
            print(f"pushpull {command}: error: cell {cell.name}: {exc}", file=sys.stderr)
            if on_failure is not None:
                on_failure(cell, str(exc))
            continue
        summary["cells"].append(cell_summary)
        write_json(run_dir / "summary.json", summary)
        if cell.loadgen_workers:  # where the workers ran, and their clocks
            workers = manifest.setdefault("loadgen_workers", {})
            workers[cell.name] = cell_summary["loadgen_processes"]
            write_json(run_dir / "manifest.json", manifest)
        progress.done(cell, f"{cell.label()}: {result_line(cell_summary)}")
