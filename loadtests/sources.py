"""The loopback addresses the clients connect from (`--source-addresses`): each client takes the
next in turn when it starts (`take`), and every connection it opens is bound to it (`current`),
so a client's connections share one address, as a real client's do: nginx's ip_hash then sends
all of an Engine.IO session's requests to one server process. Without addresses the kernel
picks (127.0.0.1). One address is also at most ~28k connections to one server port (the
ephemeral ports); more addresses lift that."""

from __future__ import annotations

import itertools

import gevent.local

_addresses: list[str] = []
_turn = itertools.count()
_local = gevent.local.local()


def configure(addresses: list[str], offset: int = 0) -> None:
    """The addresses (empty: none chosen); `offset` starts this process elsewhere in the list."""
    global _addresses, _turn
    _addresses = list(addresses)
    _turn = itertools.count(offset)


def take() -> str | None:
    """Bind the calling greenlet (a client's) to the next address; returns it."""
    address = _addresses[next(_turn) % len(_addresses)] if _addresses else None
    _local.address = address
    return address


def current() -> tuple[str, int] | None:
    """The calling greenlet's address as a socket's source_address, or None."""
    address = getattr(_local, "address", None)
    return None if address is None else (address, 0)
