"""`pushpull networks`: the built-in network profiles, with the source of every number."""

from __future__ import annotations

import argparse

from pushpull.core import networks

NAME = "networks"


def add_parser(commands) -> None:
    listing = commands.add_parser(NAME, help="list the emulated networks (--network) and sources")
    listing.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(networks.text_table())
    return 0
