"""The server's clock: the system's wall clock in nanoseconds, shifted by `--clock-offset-ms`.

Every time a server tells its clients (an event's `t_pub` and `t_sched`, `GET /time`) comes from
`now_ns()`. An offset makes a server whose clock is off by a known amount, as a server on another
machine would be, so that a load generator's clock-offset correction can be checked against it.
"""

from __future__ import annotations

import time

_offset_ns = 0


def set_offset_ms(milliseconds: float) -> None:
    global _offset_ns
    _offset_ns = round(milliseconds * 1e6)


def now_ns() -> int:
    return time.time_ns() + _offset_ns
