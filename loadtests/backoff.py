"""How long a client waits before reconnecting after its server dropped it (the storm): what the
real client library does by default, one policy per key of the registry's BACKOFFS
(pushpull/core/transports.py), which says which transport follows which.

Each policy is a factory called once per client (a policy may draw its per-client randomness
then); what it returns gives the wait in seconds before reconnect `attempt` (0, 1, ...).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pushpull.core import transports

Delay = Callable[[int], float]


def socketio_client_backoff(attempt: int) -> float:
    """socket.io-client's Manager defaults: reconnectionDelay 1 s doubling per attempt up to
    reconnectionDelayMax 5 s, each randomised by +-50% (randomizationFactor 0.5)."""
    return min(1.0 * 2**attempt, 5.0) * random.uniform(0.5, 1.5)


def reconnecting_websocket_backoff(attempt: int, first: float) -> float:
    """The npm package reconnecting-websocket's defaults (the browser's WebSocket has no
    reconnect of its own): a minimum delay of 1 s + random(0..4 s), drawn once per client
    (`first`), growing 1.3x per attempt up to 10 s."""
    return min(first * 1.3**attempt, 10.0)


def eventsource_backoff(attempt: int) -> float:
    """EventSource's reconnection time: Chromium's default, 3 s every attempt, no jitter (the
    server may change it with `retry:`; pushpull's does not)."""
    return 3.0


def reconnecting_websocket() -> Delay:
    first = 1.0 + random.uniform(0.0, 4.0)  # drawn once per client
    return lambda attempt: reconnecting_websocket_backoff(attempt, first)


POLICIES: dict[str, Callable[[], Delay]] = {
    "socket.io-client": lambda: socketio_client_backoff,
    "reconnecting-websocket": reconnecting_websocket,
    "EventSource": lambda: eventsource_backoff,
}
if set(POLICIES) != set(transports.BACKOFFS):
    raise RuntimeError(
        f"loadtests/backoff.py implements {sorted(POLICIES)}, "
        f"the registry's BACKOFFS are {sorted(transports.BACKOFFS)}"
    )


def policy(transport: str) -> Delay:
    """A new client's delays, by the `backoff` of `transport`'s registry entry."""
    return POLICIES[transports.get(transport).backoff]()
