"""What the measuring commands share: their flags (declared once here, each command picking the
ones it has and its own defaults) and the one way those flags become a `BenchConfig`."""

from __future__ import annotations

import argparse
from dataclasses import replace

from pushpull.cli import values
from pushpull.core import transports
from pushpull.harness import certs, preflight
from pushpull.harness.config import BenchConfig


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


# The load's flags: dest -> (flag, help). A command adds the ones it has with its own defaults.
LOAD_FLAGS = {
    "transports": ("--transports", f"any of {','.join(transports.NAMES)} (default %(default)s)"),
    "clients": ("--clients", "client counts; a list sweeps (default %(default)s)"),
    "duration": (
        "--duration",
        "seconds of steady-state measurement per cell (default %(default)s)",
    ),
    "rate": ("--rate", "events published per second; a list sweeps (default %(default)s)"),
    "poll_interval": (
        "--poll-interval",
        "short-poll period in seconds; a list sweeps (default %(default)s)",
    ),
    "spawn_rate": ("--spawn-rate", "clients started per second (default %(default)s)"),
    "repeat": ("--repeat", "measure every cell this many times, interleaved (default %(default)s)"),
    "loadgen_procs": (
        "--loadgen-procs",
        "Locust processes per cell (master + N workers when N > 1); a list sweeps "
        "(default %(default)s)",
    ),
    "network": (
        "--network",
        "the network between each client and the server, emulated per connection: loopback "
        "(none), a built-in profile (`pushpull networks`) or a spec "
        "rtt=80ms/jitter=10ms/down=10mbit/up=2mbit/loss=1%% (any of its keys); a list sweeps "
        "(default %(default)s)",
    ),
    "resume": (
        "--resume",
        "whether the clients that lack resume by design "
        f"({', '.join(t.name for t in transports.REGISTRY if not t.resumes)}) ask the server to "
        "replay what they missed when they come back: off, on, or off,on to compare "
        "(default %(default)s; the others always resume)",
    ),
}


def add_load_options(parser: argparse.ArgumentParser, **defaults) -> None:
    """Add the load flags named by `defaults` (dest=default, or dest=(default, help) where the
    command's help says more), in LOAD_FLAGS' order."""
    for dest, (flag, text) in LOAD_FLAGS.items():
        if dest in defaults:
            default = defaults[dest]
            if isinstance(default, tuple):
                default, text = default
            parser.add_argument(flag, default=default, help=text)


def transports_default(which: str | None) -> str:
    return ",".join(transports.default_names(which))


def add_client_option(parser: argparse.ArgumentParser, bench: bool = False) -> None:
    """--client: the load-generator client. A transport with reference clients also takes
    --<transport>-client, an older spelling of --client (bench only)."""
    references = [
        f"{kind} for {t.name}" for t in transports.REGISTRY for kind in list(t.clients)[1:]
    ]
    aliases = [f"--{t.name}-client" for t in transports.REGISTRY if len(t.clients) > 1]
    parser.add_argument(
        "--client",
        *(aliases if bench else []),
        dest="client",
        default="lean",
        help="load-generator client: lean (default), or a transport's reference client "
        f"({', '.join(references)}); a list compares them",
    )


def add_run_options(parser: argparse.ArgumentParser, plot: bool = True) -> None:
    """Where the run folder goes, CPU pinning, the one-run-at-a-time guard, and the charts: the
    same for every command that measures."""
    parser.add_argument(
        "--out", default="results", help="folder for run folders (default %(default)s)"
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="don't put server and load generator on separate cores",
    )
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


def add_tls_file_options(parser: argparse.ArgumentParser, ca_help: str) -> None:
    """--tls-cert, --tls-key and --tls-ca: your own certificate instead of the run's
    (pushpull/harness/certs.py checks them)."""
    parser.add_argument("--tls-cert", default=None, metavar="PEM", help="your server certificate")
    parser.add_argument("--tls-key", default=None, metavar="PEM", help="its private key")
    parser.add_argument("--tls-ca", default=None, metavar="PEM", help=ca_help)


def add_placement_options(bench: argparse.ArgumentParser) -> None:
    """What serves the cells (started here, or --target), what stands in front of them (TLS,
    nginx) and where the load comes from: the same flags for bench, capacity, perf and storm."""
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
        "--tls",
        default="off",
        help="off, on, or off,on to compare: every transport over https and wss, the servers' "
        "certificate from a CA made for the run (or --tls-cert/--tls-key/--tls-ca) and verified "
        "by every client (default off)",
    )
    add_tls_file_options(
        bench, "the CA the clients verify the server against (with --target https://..., alone)"
    )
    bench.add_argument(
        "--proxy",
        default="none",
        help="none, nginx, or none,nginx to compare: Debian's nginx in front of the server "
        "process(es), as Flask-SocketIO's deployment docs configure it (default none)",
    )
    bench.add_argument(
        "--source-addresses",
        default=None,
        metavar="RANGE",
        help="loopback addresses the clients connect from, e.g. 127.0.0.2-127.0.0.254 or "
        "127.0.1.0/24 (default: 127.0.0.1; behind nginx with several server processes one "
        "per /24 of 127.0.1.1-127.0.254.1, as ip_hash keys on an address's first 3 octets)",
    )


def build_config(args: argparse.Namespace, *, first_only: tuple[str, ...] = (), **fixed):
    """The one way a command's flags become a BenchConfig: every flag the command has is parsed
    and checked here, in an order where each check sees what it depends on; what the command
    decides itself (perf's rate, storm's duration) comes in `fixed`; `first_only` names the list
    fields of which only the first value counts (capacity searches one rate)."""
    given = vars(args)
    chosen = values.parse_transports(args.transports)
    kw: dict = {"transports": chosen}
    if "server_procs" in given:
        kw.update(deployment(args))
    kw.update(load(args))
    if "loadgen_workers" in given:
        kw.update(workers(args, kw["loadgen_procs"]))
    if "client" in given:
        kw["client_kinds"] = values.parse_client_kinds(args.client, chosen)
    if "churn_every" in given:
        kw["churn_every"] = values.parse_churn_every(args.churn_every)
        values.check_churn(kw["churn_every"], kw.get("client_kinds", ["lean"]))
        kw["churn_downtime"] = values.bounded_float(
            "--churn-downtime", args.churn_downtime, "seconds away", "1", 0.0, 600.0, low_open=False
        )
    kw["out"] = preflight.check_out_dir(args.out)
    kw["allow_concurrent"] = args.allow_concurrent
    for name in first_only:
        kw[name] = kw[name][:1]
    config = BenchConfig(**{**kw, **fixed})
    return replace(config, **timing(args, config))


def load(args: argparse.Namespace) -> dict:
    """The load's flags that the command has (LOAD_FLAGS and the bench's own), parsed."""
    given = vars(args)
    parsers = {
        "clients": ("clients", values.parse_clients),
        "duration": ("duration", values.parse_duration),
        "rate": ("rates", values.parse_rates),
        "poll_interval": ("poll_intervals", values.parse_poll_intervals),
        "spawn_rate": ("spawn_rate", values.parse_spawn_rate),
        "repeat": ("repeat", values.parse_repeat),
        "loadgen_procs": ("loadgen_procs", values.parse_loadgen_procs),
        "resume": ("resume", values.parse_resume),
        "network": ("networks", values.parse_networks),
        "scenario": ("scenario", values.parse_scenario),
        "send_rate": ("send_rates", values.parse_send_rates),
        "payload_bytes": ("payload_bytes", values.parse_payload_bytes),
        "port": ("port", values.parse_port),
        "host": ("host", str),
    }
    return {field: parse(given[dest]) for dest, (field, parse) in parsers.items() if dest in given}


def deployment(args: argparse.Namespace) -> dict:
    """--server-procs, --message-queue and --target: what serves the cells."""
    server_procs = values.parse_server_procs(args.server_procs)
    queues = values.parse_message_queues(args.message_queue, server_procs)
    target = values.parse_target(args.target, server_procs, queues)
    if target is not None:  # https or not is the target's; its CA is --tls-ca or the system's
        secure, proxies = values.target_tls(target, args)
        tls_files = certs.given_ca(args.tls_ca)
    else:
        proxies = values.parse_proxies(args.proxy)
        secure = values.parse_tls(args.tls)
        tls_files = certs.given(args.tls_cert, args.tls_key, args.tls_ca)
    spread = "nginx" in proxies and max(server_procs) > 1
    return {
        "target": target,
        "server_procs": server_procs,
        "message_queues": queues,
        "queue_info": preflight.check_queues(queues),
        "tls": secure,
        "tls_files": tls_files,
        "proxies": proxies,
        "source_addresses": values.parse_source_addresses(args.source_addresses, spread),
    }


def workers(args: argparse.Namespace, loadgen_procs: list[int]) -> dict:
    """--loadgen-workers and where their master listens (`loadgen_procs`: --loadgen-procs)."""
    return {
        "loadgen_workers": values.parse_workers(args.loadgen_workers, loadgen_procs),
        "master_host": args.master_host,
        "master_port": values.parse_port(args.master_port, "--master-port", zero=False),
        "workers_wait_s": values.bounded_float(
            "--workers-wait", args.workers_wait, "seconds", "60", 0.0, 3600.0
        ),
    }


def timing(args: argparse.Namespace, config: BenchConfig) -> dict:
    """--grace, --drain and --idle, checked: a drain must outlast the short polls' interval."""
    drain = None
    if args.drain is not None:
        drain = values.bounded_float("--drain", args.drain, "seconds", "2", 0.0, 600.0)
        values.check_drain(drain, config.polled_intervals())
    return {
        "grace": values.bounded_float(
            "--grace", args.grace, "seconds", "2", 0.0, 600.0, low_open=False
        ),
        "drain": drain,
        "idle_s": values.bounded_float(
            "--idle", args.idle, "seconds", "0.5", 0.0, 60.0, low_open=False
        ),
    }
