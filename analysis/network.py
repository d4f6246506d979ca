"""Runs over emulated networks (`--network`, docs/network.md): delivery latency against the
network's round trip, per transport, with what theory predicts beside it; and the findings' words
for what a user on each network waits.

Theory (docs/network.md): over a one-way delay d down (and no jitter), a pushed event, and a
long-poll held when the event is published, arrive d later than on loopback; a short poll's wait
is uniform over its interval I, plus d: p50 = I/2 + d. A new client's first connect waits the
round trips of its transport's handshake (the registry's `connect_round_trips`) on top of its
loopback time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from analysis.results import Run  # noqa: E402
from analysis.style import LINESTYLES, color, label, ms_text, rank, save_figure  # noqa: E402
from pushpull.core import networks, transports  # noqa: E402


def rtt_ms(cell: dict) -> float:
    return (cell.get("network") or {}).get("rtt_ms", 0.0)


def down_ms(cell: dict) -> float:
    return (cell.get("network") or {}).get("down_delay_ms", 0.0)


def network_name(cell: dict) -> str:
    return (cell.get("network") or {}).get("name", networks.LOOPBACK)


def predicted_p50_ms(cell: dict, loopback: dict | None) -> float | None:
    """Theory's p50 for `cell` from its transport's loopback cell (same clients and rate)."""
    if transports.get(cell["transport"]).periodic:
        return (cell["poll_interval"] or 0) * 1000 / 2 + down_ms(cell)
    if loopback is None or loopback["latency_us"]["p50"] is None:
        return None
    return loopback["latency_us"]["p50"] / 1000 + down_ms(cell)


def network_cells(run: Run) -> list[dict]:
    """The measured cells of a run that varied the network (else none: no chart)."""
    cells = [c for c in run.points() if c["latency_us"]["count"]]
    return cells if len({network_name(c) for c in cells}) > 1 else []


def loopback_of(cell: dict, cells: list[dict]) -> dict | None:
    for other in cells:
        if (
            other.get("network") is None
            and other["transport"] == cell["transport"]
            and other["clients"] == cell["clients"]
            and other["rate"] == cell["rate"]
            and other.get("poll_interval") == cell.get("poll_interval")
        ):
            return other
    return None


def predicted_connect_ms(cell: dict, loopback: dict | None) -> float | None:
    """Theory's first-connect p50: loopback's plus the handshake's round trips."""
    if loopback is None or not (loopback.get("first_connect_us") or {}).get("p50"):
        return None
    trips = len(transports.get(cell["transport"]).connect_round_trips)
    return loopback["first_connect_us"]["p50"] / 1000 + trips * rtt_ms(cell)


def largest_clients(run: Run) -> tuple[int, list[dict]]:
    """The network cells at the run's largest client count (the charts' cells)."""
    cells = network_cells(run)
    if not cells:
        return 0, []
    clients = max(c["clients"] for c in cells)
    return clients, [c for c in cells if c["clients"] == clients]


def plot_connect_vs_rtt(run: Run, out: Path) -> Path | None:
    """Each transport's first connect (begun -> welcome, p50 and p99) against the network's round
    trip; theory's p50 (loopback + the handshake's round trips) dotted in the transport's colour."""
    return plot_vs_rtt(
        run, out / "connect_vs_rtt.png", "first_connect_us", predicted_connect_ms,
        ylabel="first connect to welcome (ms)",
        title="A new client's wait for its welcome vs the network's round trip",
        how="connect begun -> first protocol message (TCP and every handshake step)",
        name=lambda t: f"{label(t)}: {len(transports.get(t).connect_round_trips)} round trips",
    )  # fmt: skip


def plot_latency_vs_rtt(run: Run, out: Path) -> Path | None:
    """p50 and p99 per transport against the network's round trip (loopback at 0), at the run's
    largest client count; theory's p50 as a thin dotted line in the transport's colour."""
    return plot_vs_rtt(
        run, out / "latency_vs_rtt.png", "latency_us", predicted_p50_ms,
        ylabel="delivery latency (ms, log scale)",
        title="Delivery latency vs the network's round trip",
        how="each client on its own emulated link", name=label, log=True,
    )  # fmt: skip


def plot_vs_rtt(
    run: Run,
    path: Path,
    key: str,
    predict: Callable[[dict, dict | None], float | None],
    ylabel: str,
    title: str,
    how: str,
    name: Callable[[str], str],
    log: bool = False,
) -> Path | None:
    """One figure (`key`'s p50 and p99 per transport) against the network's round trip at the
    run's largest client count, with `predict`'s p50 dotted; None when nothing to draw."""
    clients, cells = largest_clients(run)
    cells = [c for c in cells if (c.get(key) or {}).get("count")]
    if not cells:
        return None
    fig, ax = plt.subplots(figsize=(12, 5.6))
    order = sorted({c["transport"] for c in cells}, key=rank)
    for transport in order:
        mine = sorted((c for c in cells if c["transport"] == transport), key=rtt_ms)
        for stat in ("p50", "p99"):
            y = [c[key][stat] / 1000 for c in mine]
            ax.plot([rtt_ms(c) for c in mine], y, LINESTYLES[stat], color=color(transport),
                    marker="o", markersize=4)  # fmt: skip
        theory = [(rtt_ms(c), predict(c, loopback_of(c, mine))) for c in mine]
        theory = [(xi, yi) for xi, yi in theory if yi is not None]
        if theory:
            ax.plot(*zip(*theory), ":", color=color(transport), linewidth=1.2, alpha=0.9)
    names = sorted({(rtt_ms(c), network_name(c)) for c in cells})
    ax.set_xticks([r for r, _ in names])
    ax.set_xticklabels([f"{n}\n{r:g} ms" for r, n in names], fontsize=8)
    ax.set_xlabel("network (its round trip, ms)")
    ax.grid(True, which="both", alpha=0.3)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    handles = [Line2D([], [], color=color(t), linewidth=2.5, label=name(t)) for t in order]
    handles += [
        Line2D([], [], color="black", linestyle="-", label="p50 (solid)"),
        Line2D([], [], color="black", linestyle="--", label="p99 (dashed)"),
        Line2D([], [], color="black", linestyle=":", label="theory's p50 (dotted)"),
    ]
    ax.legend(handles=handles, fontsize=8.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{title}, {clients} clients\n{how}; {run.title_suffix()}", fontsize=10.5)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def network_notes(cells: list[dict]) -> list[str]:
    """Per emulated network, what its users wait at p99, the slowest transport against the
    fastest: 'On lte (70 ms round trip), 100 clients: an event reaches a long-poll client after
    95 ms at p99, a plain WebSocket client after 36 ms.'"""
    measured = [c for c in cells if c["latency_us"]["count"] and c.get("network")]
    notes = []
    for name in sorted({network_name(c) for c in measured}, key=lambda n: (len(n), n)):
        mine = [c for c in measured if network_name(c) == name]
        clients = max(c["clients"] for c in mine)
        mine = [c for c in mine if c["clients"] == clients]
        slow = max(mine, key=lambda c: c["latency_us"]["p99"])
        fast = min(mine, key=lambda c: c["latency_us"]["p99"])
        if slow is fast:
            continue
        notes.append(
            f"On {name} ({rtt_ms(slow):g} ms round trip), {clients} clients: an event reaches a "
            f"{label(slow['transport'])} client after {ms_text(slow['latency_us']['p99'])} ms at "
            f"p99, a {label(fast['transport'])} client after {ms_text(fast['latency_us']['p99'])} ms."
            + connect_words(mine)
        )
    return notes


def connect_words(cells: list[dict]) -> str:
    """' A new client waits 510 ms for its welcome on Socket.IO (its long-polling), 205 ms on
    SSE.' (the slowest first connect and the fastest), or '' before schema 7."""
    timed = [c for c in cells if (c.get("first_connect_us") or {}).get("p50")]
    if len(timed) < 2:
        return ""
    slow = max(timed, key=lambda c: c["first_connect_us"]["p50"])
    fast = min(timed, key=lambda c: c["first_connect_us"]["p50"])
    return (
        f" A new client waits {ms_text(slow['first_connect_us']['p50'])} ms (p50) for its welcome "
        f"on {label(slow['transport'])}, {ms_text(fast['first_connect_us']['p50'])} ms on "
        f"{label(fast['transport'])}."
    )
