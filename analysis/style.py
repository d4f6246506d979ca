"""One look for every chart: a fixed, colour-blind-safe colour per transport (Okabe-Ito)."""

from __future__ import annotations

import math

COLORS = {
    "socketio": "#0072B2",  # blue
    "longpoll": "#D55E00",  # vermillion
    "shortpoll": "#E69F00",  # orange
    "sse": "#009E73",  # bluish green
    "socketio-polling": "#CC79A7",  # reddish purple
}
ORDER = list(COLORS)
LABELS = {
    "socketio": "Socket.IO (websocket push)",
    "longpoll": "long-poll",
    "shortpoll": "short-poll",
    "sse": "Server-Sent Events",
    "socketio-polling": "Socket.IO (its long-polling)",
}
LINESTYLES = {"p50": "-", "p99": "--"}


def color(transport: str) -> str:
    return COLORS.get(transport, "#555555")


def label(transport: str) -> str:
    return LABELS.get(transport, transport)


def rank(transport: str) -> tuple[int, str]:
    """Sort key: transports in the fixed ORDER, unknown ones after, by name."""
    return (ORDER.index(transport) if transport in ORDER else len(ORDER), transport)


def transport_order(transports) -> list[str]:
    return sorted(set(transports), key=rank)


def plain_number(value: float, _pos=None) -> str:
    """Axis labels as plain numbers (0.1, 1, 10, 500), not 10^x."""
    return f"{value:g}"


def ms_text(value_us: float | None) -> str:
    """Microseconds as milliseconds for tables: '12.3', or '-' when there is no value."""
    return "-" if value_us is None else f"{value_us / 1000:.1f}"


def minor_2_5(value: float, _pos=None) -> str:
    """Label the 2s and 5s between the decades of a log axis (2, 5, 20, 50, ...), not the rest."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return f"{value:g}" if round(mantissa, 6) in (2.0, 5.0) else ""
