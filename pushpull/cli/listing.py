"""`pushpull transports`: the registry as a table (and, with --names, one default set's names
as a comma list: what the Makefile's default runs take)."""

from __future__ import annotations

import argparse

from pushpull.core import transports

NAME = "transports"


def add_parser(commands) -> None:
    listing = commands.add_parser(NAME, help="list the transports pushpull measures")
    listing.add_argument(
        "--names",
        nargs="?",
        const="all",
        default=None,
        choices=("all", *transports.DEFAULT_SETS),
        metavar="SET",
        help="print only names, comma-separated: all, or the transports of a default run "
        f"({', '.join(transports.DEFAULT_SETS)})",
    )
    listing.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.names is None:
        print(transports.text_table())
    else:
        print(",".join(transports.default_names(None if args.names == "all" else args.names)))
    return 0
