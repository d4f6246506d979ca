"""`pushpull`: the command line.

    pushpull bench --clients 10,100,500 --transports socketio,longpoll,shortpoll --duration 20
    pushpull plot results/latest
    pushpull report results/latest
    pushpull compare results/RUN_A results/RUN_B
    pushpull capacity --transports socketio,longpoll --slo-p99 250
    pushpull perf --transports socketio,sse --clients 1000
    pushpull storm --transports socketio,sse,longpoll --clients 1000
    pushpull bench --transports socketio,sse --churn-every 5 --churn-downtime 1 --resume off,on
    pushpull bench --transports socketio,sse --server-procs 1,2 --message-queue redis://127.0.0.1:6379/0
    pushpull bench --loadgen-workers 2 --master-host 10.0.0.5   # + `pushpull worker --master 10.0.0.5` x2
    pushpull bench --target http://10.0.0.7:5001 --transports socketio
    pushpull validate                     # does it measure what it says? (a few minutes)
    pushpull demo --port 8000
    pushpull transports

Bad input is one line naming the flag, what was wrong and what is allowed, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from pushpull.core import transports
from pushpull.harness import config as cfg
from pushpull.harness import demo
from pushpull.harness.procs import HarnessError, output_error

DEFAULTS = {
    "clients": "10,100,500",
    "transports": "socketio,websocket,longpoll,shortpoll",
    "duration": "15",
    "rate": "2",
    "poll_interval": "0.5",
    "out": "results",
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_run_options(parser: argparse.ArgumentParser, plot: bool = True) -> None:
    """Where the run folder goes, CPU pinning, the one-run-at-a-time guard, and the charts: the
    same for every command that measures."""
    parser.add_argument("--out", default=DEFAULTS["out"], help="folder for run folders")
    parser.add_argument("--no-pin", action="store_true", help="don't pin server and Locust apart")
    parser.add_argument(
        "--allow-concurrent",
        action="store_true",
        help="measure even while another pushpull run measures (recorded in the results)",
    )
    if plot:
        parser.add_argument("--no-plot", action="store_true", help="skip the charts at the end")


def add_timing_options(parser: argparse.ArgumentParser) -> None:
    """The waits around each cell's window: the same flags for every command that measures."""
    parser.add_argument(
        "--grace",
        default="2",
        help="seconds after spawning before the window opens (default %(default)s)",
    )
    parser.add_argument(
        "--drain",
        default=None,
        help="seconds after the window for the deliveries still in flight (default: 2, or 3 "
        "short-poll intervals if longer); at least the longest --poll-interval",
    )
    parser.add_argument(
        "--idle",
        default="0.5",
        help="seconds the server's CPU is measured with no client before each cell, the idle "
        "baseline that marginal CPU per delivery subtracts; 0 skips it (default %(default)s)",
    )


def timing_options(args: argparse.Namespace, poll_intervals: list[float]) -> dict:
    """--grace, --drain and --idle, checked: BenchConfig keywords."""
    drain = None
    if args.drain is not None:
        drain = cfg.bounded_float("--drain", args.drain, "seconds", "2", 0.0, 600.0)
        cfg.check_drain(drain, poll_intervals)
    return {
        "grace": cfg.bounded_float(
            "--grace", args.grace, "seconds", "2", 0.0, 600.0, low_open=False
        ),
        "drain": drain,
        "idle_s": cfg.bounded_float(
            "--idle", args.idle, "seconds", "0.5", 0.0, 60.0, low_open=False
        ),
    }


def build_parser() -> Parser:
    parser = Parser(
        prog="pushpull", description="Benchmark real-time push against polling on Flask."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    bench = commands.add_parser("bench", help="run a sweep, then draw its charts")
    bench.add_argument(
        "--clients",
        default=DEFAULTS["clients"],
        help="client counts, e.g. 10,100,500 (default %(default)s)",
    )
    bench.add_argument(
        "--transports",
        default=DEFAULTS["transports"],
        help=f"any of {','.join(transports.NAMES)} (default %(default)s)",
    )
    bench.add_argument(
        "--duration",
        default=DEFAULTS["duration"],
        help="seconds of steady-state measurement per cell (default %(default)s)",
    )
    bench.add_argument(
        "--rate",
        default=DEFAULTS["rate"],
        help="events published per second; a list makes a sweep (default %(default)s)",
    )
    bench.add_argument(
        "--poll-interval",
        default=DEFAULTS["poll_interval"],
        help="short-poll period in seconds; a list makes a sweep (default %(default)s)",
    )
    bench.add_argument(
        "--out", default=DEFAULTS["out"], help="folder for run folders (default %(default)s)"
    )
    bench.add_argument(
        "--host", default="127.0.0.1", help="address the servers bind (default %(default)s)"
    )
    bench.add_argument(
        "--port", default="0", help="server port, 0 picks a free one per cell (default 0)"
    )
    bench.add_argument(
        "--spawn-rate", default="200", help="clients started per second (default %(default)s)"
    )
    add_timing_options(bench)
    bench.add_argument(
        "--scenario",
        default="broadcast",
        help="broadcast (the server publishes at --rate) or chat (clients send at --send-rate)",
    )
    bench.add_argument(
        "--send-rate",
        default="0.2",
        help="chat: messages per second each client sends; a list sweeps (default %(default)s)",
    )
    bench.add_argument(
        "--payload-bytes",
        default="0",
        help="pad every event (and chat message) with this many bytes; a list sweeps (default 0)",
    )
    bench.add_argument(
        "--churn-every",
        default="0",
        help="mean seconds between one client's disconnects (exponentially distributed); "
        "0 = off; a list sweeps (default 0)",
    )
    bench.add_argument(
        "--churn-downtime",
        default="1",
        help="seconds a churning client stays away before reconnecting (default 1)",
    )
    bench.add_argument(
        "--resume",
        default="off",
        help="with churn, whether Socket.IO and WebSocket clients ask the server to replay what "
        "they missed: off, on, or off,on to compare (default off; the others always resume)",
    )
    bench.add_argument(
        "--loadgen-procs",
        default="1",
        help="Locust processes per cell (master + N workers when N > 1); a list sweeps (default 1)",
    )
    bench.add_argument(
        "--target",
        default=None,
        metavar="URL",
        help="measure a running server instead of starting one (it must speak the transports' "
        "part of docs/protocol.md); --rate then only labels the cells",
    )
    bench.add_argument(
        "--loadgen-workers",
        default="0",
        help="Locust workers from other machines that join each cell (start each with "
        "`pushpull worker --master HOST:PORT`); 0 = none (default)",
    )
    bench.add_argument(
        "--master-host",
        default="127.0.0.1",
        help="address Locust's master listens on for workers (default %(default)s)",
    )
    bench.add_argument(
        "--master-port", default="5557", help="port of Locust's master (default %(default)s)"
    )
    bench.add_argument(
        "--workers-wait",
        default="60",
        help="seconds a cell waits for all workers to join (default %(default)s)",
    )
    bench.add_argument(
        "--server-procs",
        default="1",
        help="server processes sharing one event stream through --message-queue; "
        "a list sweeps (default 1)",
    )
    bench.add_argument(
        "--message-queue",
        default=None,
        metavar="URL",
        help="Redis for the server processes, e.g. redis://127.0.0.1:6379/0; "
        "a list with none compares (default: no queue)",
    )
    bench.add_argument(
        "--client",
        "--socketio-client",
        dest="client",
        default="lean",
        help="load-generator client: lean (default), or a transport's reference client "
        "(python-socketio for socketio); a list compares them",
    )
    bench.add_argument(
        "--repeat", default="1", help="measure every cell this many times, interleaved (default 1)"
    )
    bench.add_argument(
        "--no-pin",
        action="store_true",
        help="don't put server and load generator on separate cores",
    )
    bench.add_argument(
        "--allow-concurrent",
        action="store_true",
        help="measure even while another pushpull run measures (recorded in the results)",
    )
    bench.add_argument("--no-plot", action="store_true", help="skip the charts at the end")

    perf = commands.add_parser(
        "perf", help="benchmark the load generator: server vs Locust CPU per delivery, side by side"
    )
    perf.add_argument(
        "--transports",
        default=",".join(transports.NAMES),
        help="transports to measure (default: all)",
    )
    perf.add_argument(
        "--client",
        default="lean",
        help="load-generator clients to compare, e.g. lean,python-socketio (default lean)",
    )
    perf.add_argument(
        "--loadgen-procs", default="1", help="Locust processes; a list compares (default 1)"
    )
    perf.add_argument("--clients", default="1000", help="clients per cell (default %(default)s)")
    perf.add_argument("--duration", default="20", help="seconds per window (default %(default)s)")
    perf.add_argument("--repeat", default="3", help="repeats per variant (default %(default)s)")
    add_timing_options(perf)
    add_run_options(perf, plot=False)

    capacity = commands.add_parser(
        "capacity", help="step clients up per transport until p99 passes a limit"
    )
    capacity.add_argument(
        "--transports",
        default=DEFAULTS["transports"],
        help="transports to search (default %(default)s)",
    )
    capacity.add_argument(
        "--slo-p99", default="250", help="p99 delivery latency limit in ms (default %(default)s)"
    )
    capacity.add_argument("--start", default="100", help="first client count (default %(default)s)")
    capacity.add_argument(
        "--step", default="250", help="clients added per step (default %(default)s)"
    )
    capacity.add_argument("--max", default="5000", help="stop searching here (default %(default)s)")
    capacity.add_argument(
        "--capacity-repeats",
        default="3",
        help="then bisect the bracket and measure its ends this many times each; the capacity "
        "is reported as a range (1: the step search alone; default %(default)s)",
    )
    capacity.add_argument(
        "--duration", default="10", help="seconds per window (default %(default)s)"
    )
    capacity.add_argument(
        "--rate", default=DEFAULTS["rate"], help="events published per second (default %(default)s)"
    )
    capacity.add_argument(
        "--poll-interval",
        default=DEFAULTS["poll_interval"],
        help="short-poll period (default %(default)s)",
    )
    capacity.add_argument(
        "--spawn-rate", default="200", help="clients started per second (default %(default)s)"
    )
    add_timing_options(capacity)
    add_run_options(capacity)

    storm = commands.add_parser(
        "storm", help="drop every connection at once mid-run and time how clients come back"
    )
    storm.add_argument(
        "--transports",
        default="socketio,sse,longpoll",
        help="transports to storm (default %(default)s)",
    )
    storm.add_argument("--clients", default="1000", help="clients; a list sweeps (default 1000)")
    storm.add_argument(
        "--rate", default=DEFAULTS["rate"], help="events published per second (default %(default)s)"
    )
    storm.add_argument(
        "--before", default="5", help="seconds of steady state before the drop (default 5)"
    )
    storm.add_argument("--after", default="20", help="seconds measured after the drop (default 20)")
    storm.add_argument(
        "--resume",
        default="off",
        help="whether Socket.IO and WebSocket clients ask for a replay when they come back: "
        "off, on, or off,on (default off; the others always resume)",
    )
    storm.add_argument(
        "--spawn-rate", default="200", help="clients started per second (default %(default)s)"
    )
    storm.add_argument("--repeat", default="1", help="repeats per transport (default 1)")
    add_timing_options(storm)
    add_run_options(storm)

    worker = commands.add_parser(
        "worker", help="join a sweep's Locust master from this machine (a Locust worker)"
    )
    worker.add_argument(
        "--master", required=True, help="HOST[:PORT] of the sweep's master (port 5557 by default)"
    )
    worker.add_argument("--once", action="store_true", help="leave after one cell")

    validate = commands.add_parser(
        "validate",
        help="check pushpull's figures against known truths (a few minutes; docs/validate.md)",
    )
    validate.add_argument("--out", default=DEFAULTS["out"], help="folder for the validate folder")
    validate.add_argument(
        "--trials", default="200", help="synthetic runs per interval model (default 200)"
    )
    validate.add_argument(
        "--duration", default="20", help="seconds measured per real cell (default 20)"
    )

    commands.add_parser("transports", help="list the transports pushpull measures")

    demo.add_parser(commands)

    plot = commands.add_parser("plot", help="draw the charts of a run folder")
    plot.add_argument("run_dir", help="a run folder, e.g. results/latest")

    report = commands.add_parser("report", help="charts + a self-contained report.html of a run")
    report.add_argument("run_dir", help="a run folder, e.g. results/latest")

    compare = commands.add_parser("compare", help="ratios of two runs' figures, noise marked")
    compare.add_argument("run_a", help="the baseline run folder (A)")
    compare.add_argument("run_b", help="the run compared with it (B)")
    compare.add_argument(
        "--out", default=None, help="folder for compare.md and compare.png (default: beside A)"
    )
    return parser


def bench_config(args: argparse.Namespace) -> cfg.BenchConfig:
    chosen = cfg.parse_transports(args.transports)
    server_procs = cfg.parse_server_procs(args.server_procs)
    queues = cfg.parse_message_queues(args.message_queue, server_procs)
    loadgen_procs = cfg.parse_loadgen_procs(args.loadgen_procs)
    workers = cfg.parse_workers(args.loadgen_workers, loadgen_procs)
    kinds = cfg.parse_client_kinds(args.client, chosen)
    churn = cfg.parse_churn_every(args.churn_every)
    cfg.check_churn(churn, kinds)
    poll_intervals = cfg.parse_poll_intervals(args.poll_interval)
    return cfg.BenchConfig(
        target=cfg.parse_target(args.target, server_procs, queues),
        loadgen_workers=workers,
        master_host=args.master_host,
        master_port=cfg.parse_port(args.master_port, "--master-port", zero=False),
        workers_wait_s=cfg.bounded_float(
            "--workers-wait", args.workers_wait, "seconds", "60", 0.0, 3600.0
        ),
        server_procs=server_procs,
        message_queues=queues,
        queue_info=cfg.check_queues(queues),
        clients=cfg.parse_clients(args.clients),
        transports=chosen,
        duration=cfg.parse_duration(args.duration),
        rates=cfg.parse_rates(args.rate),
        poll_intervals=poll_intervals,
        out=cfg.check_out_dir(args.out),
        host=args.host,
        port=cfg.parse_port(args.port),
        spawn_rate=cfg.bounded_float(
            "--spawn-rate", args.spawn_rate, "clients per second", "200", 0.0, 100_000.0
        ),
        loadgen_procs=loadgen_procs,
        scenario=cfg.parse_scenario(args.scenario),
        send_rates=cfg.parse_send_rates(args.send_rate),
        payload_bytes=cfg.parse_payload_bytes(args.payload_bytes),
        client_kinds=kinds,
        churn_every=churn,
        churn_downtime=cfg.bounded_float(
            "--churn-downtime", args.churn_downtime, "seconds away", "1", 0.0, 600.0, low_open=False
        ),
        resume=cfg.parse_resume(args.resume),
        repeat=cfg.positive_int("--repeat", args.repeat, "a repeat count", "3", maximum=100),
        **timing_options(args, poll_intervals if "shortpoll" in chosen else []),
        allow_concurrent=args.allow_concurrent,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from pushpull.harness.sweep import run_sweep

    config = bench_config(args)
    status, run_dir = run_sweep(config, pin=not args.no_pin)
    if not args.no_plot and measured(run_dir):
        report_status = cmd_report_dir(run_dir)  # an interrupted or partly failed run is drawn too
        status = status or report_status
    return status


def measured(run_dir: Path) -> bool:
    """Whether the run folder holds at least one measured cell (then it can be drawn)."""
    import json

    try:
        return bool(json.loads((run_dir / "summary.json").read_text())["cells"])
    except (OSError, ValueError, KeyError):
        return False


def cmd_report_dir(run_dir: Path) -> int:
    """Charts, summary.md and report.html of a run, from its data."""
    from analysis.report import write_report
    from analysis.results import PlotError

    try:
        report = write_report(run_dir)
    except PlotError as exc:
        print(f"pushpull report: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the charts or the report could not be written
        print(f"pushpull report: error: {output_error(exc) or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug in drawing must not hide the measurements: one line, log kept
        if interrupted(exc):
            raise KeyboardInterrupt from None
        log = Path(run_dir) / "error.log"
        log.write_text(traceback.format_exc())
        print(
            f"pushpull report: internal error: {type(exc).__name__}: {exc} (traceback in {log})",
            file=sys.stderr,
        )
        return 1
    print(f"pushpull: charts in {report.parent / 'charts'}/")
    print(f"pushpull: report in {report}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from analysis.compare import write_comparison
    from analysis.results import PlotError

    try:
        markdown, chart, text = write_comparison(
            Path(args.run_a), Path(args.run_b), Path(args.out) if args.out else None
        )
    except PlotError as exc:
        print(f"pushpull compare: error: {exc}", file=sys.stderr)
        return 1
    print(text)
    print(f"pushpull: comparison in {markdown}" + (f" and {chart}" if chart else ""))
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    """Broadcast at 2 events/s per transport (and client, and Locust process count), repeated
    and interleaved: the load generator's CPU per delivery beside the server's."""
    from analysis.perf import write_perf_report
    from pushpull.harness.sweep import run_sweep

    chosen = cfg.parse_transports(args.transports)
    config = cfg.BenchConfig(
        clients=cfg.parse_clients(args.clients),
        transports=chosen,
        duration=cfg.parse_duration(args.duration),
        rates=[2.0],
        out=cfg.check_out_dir(args.out),
        client_kinds=cfg.parse_client_kinds(args.client, chosen),
        loadgen_procs=cfg.parse_loadgen_procs(args.loadgen_procs),
        repeat=cfg.positive_int("--repeat", args.repeat, "a repeat count", "3", maximum=100),
        **timing_options(args, [0.5] if "shortpoll" in chosen else []),
        allow_concurrent=args.allow_concurrent,
    )
    status, run_dir = run_sweep(config, pin=not args.no_pin, command="perf")
    if measured(run_dir):
        report = write_perf_report(run_dir)
        print(report.read_text())
        print(f"pushpull: perf report in {report} and {report.with_suffix('.json')}")
    return status


def cmd_capacity(args: argparse.Namespace) -> int:
    from pushpull.harness.capacity import CapacitySearch
    from pushpull.harness.sweep import run_cells

    start = cfg.positive_int("--start", args.start, "a client count", "100")
    step = cfg.positive_int("--step", args.step, "a client step", "250")
    maximum = cfg.positive_int("--max", args.max, "a client count", "5000")
    if maximum < start:
        raise cfg.UsageError(f"--max: {maximum} is below --start {start}")
    chosen = cfg.parse_transports(args.transports)
    poll_intervals = cfg.parse_poll_intervals(args.poll_interval)[:1]
    config = cfg.BenchConfig(
        clients=[start],
        transports=chosen,
        duration=cfg.parse_duration(args.duration),
        rates=cfg.parse_rates(args.rate)[:1],
        poll_intervals=poll_intervals,
        out=cfg.check_out_dir(args.out),
        spawn_rate=cfg.bounded_float(
            "--spawn-rate", args.spawn_rate, "clients per second", "200", 0.0, 100_000.0
        ),
        **timing_options(args, poll_intervals if "shortpoll" in chosen else []),
        allow_concurrent=args.allow_concurrent,
    )
    slo = cfg.bounded_float("--slo-p99", args.slo_p99, "milliseconds", "250", 0.0, 60_000.0)
    repeats = cfg.positive_int(
        "--capacity-repeats", args.capacity_repeats, "a repeat count", "3", maximum=20
    )
    search = CapacitySearch(config, slo, start, step, maximum, repeats)

    def prepare(run_dir: Path) -> None:
        search.path = run_dir / "capacity.json"
        search.save()

    extra = {
        "capacity": {
            "slo_p99_ms": slo, "start": start, "step": step, "max": maximum, "repeats": repeats,
        }
    }  # fmt: skip
    status, run_dir = run_cells(
        config, not args.no_pin, search.next_cell, None, "capacity", extra, prepare, search.failed
    )
    print(search.report())
    if not args.no_plot and measured(run_dir) and (run_dir / "capacity.json").exists():
        report_status = cmd_report_dir(run_dir)  # an interrupted run is drawn too
        status = status or report_status
    return status


def cmd_storm(args: argparse.Namespace) -> int:
    """Every connection dropped at once (the servers' POST /admin/drop), --before seconds into
    the window; the clients come back with their real libraries' backoff (loadtests/users.py)."""
    from pushpull.harness.sweep import run_sweep

    before = cfg.bounded_float("--before", args.before, "seconds", "5", 0.0, 600.0)
    after = cfg.bounded_float("--after", args.after, "seconds", "20", 0.0, 600.0)
    chosen = cfg.parse_transports(args.transports)
    config = cfg.BenchConfig(
        clients=cfg.parse_clients(args.clients),
        transports=chosen,
        duration=before + after,
        rates=cfg.parse_rates(args.rate)[:1],
        out=cfg.check_out_dir(args.out),
        spawn_rate=cfg.bounded_float(
            "--spawn-rate", args.spawn_rate, "clients per second", "200", 0.0, 100_000.0
        ),
        resume=cfg.parse_resume(args.resume),
        repeat=cfg.positive_int("--repeat", args.repeat, "a repeat count", "3", maximum=100),
        **timing_options(args, [0.5] if "shortpoll" in chosen else []),
        allow_concurrent=args.allow_concurrent,
        storm_at_s=before,
    )
    status, run_dir = run_sweep(config, pin=not args.no_pin, command="storm")
    if not args.no_plot and measured(run_dir):
        report_status = cmd_report_dir(run_dir)
        status = status or report_status
    return status


def cmd_plot_dir(run_dir: Path) -> int:
    from analysis.plot import PlotError, plot_run

    try:
        written = plot_run(run_dir)
    except PlotError as exc:
        print(f"pushpull plot: error: {exc}", file=sys.stderr)
        return 1
    if written:
        print(f"pushpull: charts in {written[0].parent}/ ({', '.join(p.name for p in written)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            return cmd_bench(args)
        if args.command == "capacity":
            return cmd_capacity(args)
        if args.command == "perf":
            return cmd_perf(args)
        if args.command == "storm":
            return cmd_storm(args)
        if args.command == "plot":
            return cmd_plot_dir(Path(args.run_dir))
        if args.command == "report":
            return cmd_report_dir(Path(args.run_dir))
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "worker":
            from pushpull.harness.worker import parse_master, run_worker

            return run_worker(*parse_master(args.master), args.once)
        if args.command == "validate":
            from pushpull.harness.validate import run_validate

            trials = cfg.positive_int("--trials", args.trials, "a run count", "200", 100_000)
            duration = cfg.bounded_float("--duration", args.duration, "seconds", "20", 2.0, 600.0)
            return run_validate(cfg.check_out_dir(args.out), trials, duration)
        if args.command == "transports":
            print(transports.text_table())
            return 0
        if args.command == "demo":
            return demo.main(args)
    except cfg.UsageError as exc:
        print(f"pushpull {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:  # e.g. another run is measuring: one line, nothing started
        print(f"pushpull {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the run folder could not be written (a full disk, say)
        print(f"pushpull {args.command}: error: {output_error(exc) or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pushpull: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not interrupted(exc):
            raise
        # Ctrl-C inside an import (a second one while the report is drawn): Python raises
        # ImportError("initialization failed") from the KeyboardInterrupt. Still Ctrl-C.
        print("pushpull: interrupted", file=sys.stderr)
        return 130
    return 2


def interrupted(exc: BaseException | None) -> bool:
    """Whether `exc` was caused by Ctrl-C (a KeyboardInterrupt in its chain)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
