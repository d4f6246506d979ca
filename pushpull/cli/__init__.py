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
    pushpull networks
    pushpull bench --network loopback,lte,3g,rtt=100ms --clients 50
    pushpull bench --tls off,on --proxy none,nginx --server-procs 2 --message-queue redis://127.0.0.1:6379/0
    pushpull production --clients 100   # direct, TLS, nginx, nginx + TLS, + 2 processes on Redis

Bad input is one line naming the flag, what was wrong and what is allowed, with exit status 2.

One module per command (bench.py, perf.py, capacity.py, storm.py, worker.py, validate.py,
listing.py for `transports`, production.py, demo.py, plot.py, report.py, compare.py), each with `add_parser`
and `run`; the measuring commands share their flags and the one BenchConfig builder
(options.py), the flags' value parsers (values.py) and the step after the run (finish.py).
"""

from __future__ import annotations

import sys

from pushpull.cli import (
    bench,
    capacity,
    compare,
    demo,
    listing,
    networks,
    perf,
    plot,
    production,
    report,
    storm,
    validate,
    worker,
)
from pushpull.cli.finish import interrupted
from pushpull.cli.options import Parser
from pushpull.harness.config import UsageError
from pushpull.harness.procs import HarnessError, output_error

COMMANDS = (
    bench, perf, capacity, storm, production, worker, validate, listing, networks, demo, plot,
    report, compare,
)  # fmt: skip


def build_parser() -> Parser:
    parser = Parser(
        prog="pushpull", description="Benchmark real-time push against polling on Flask."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
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


if __name__ == "__main__":
    sys.exit(main())
