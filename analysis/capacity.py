"""The capacity chart: p99 delivery latency against clients per transport, the limit drawn, and
where each transport stopped (from capacity.json, written by `pushpull capacity`)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from analysis.results import Run  # noqa: E402
from analysis.style import color, label, minor_2_5, plain_number, save_figure, transport_order  # noqa: E402

PLAIN = FuncFormatter(plain_number)


def load_capacity(run: Run) -> dict | None:
    try:
        return json.loads((run.path / "capacity.json").read_text())
    except (OSError, ValueError):
        return None


def capacity_text(transport: str, result: dict) -> str:
    if result["capacity"] is None:
        return "none within the limit"
    return f"{'>= ' if result['lower_bound'] else ''}{result['capacity']} clients"


def plot_capacity(run: Run, out: Path) -> Path | None:
    capacity = load_capacity(run)
    if capacity is None:
        return None
    slo = capacity["slo_p99_ms"]
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    for transport in transport_order(capacity["transports"]):
        result = capacity["transports"][transport]
        steps = [(clients, p99) for clients, p99 in result["steps"] if p99 is not None]
        if not steps:
            continue
        x, y = zip(*steps)
        ax.plot(
            x,
            y,
            "-o",
            color=color(transport),
            label=f"{label(transport)}: {capacity_text(transport, result)}",
        )
        if result["stopped_at"] is not None:
            ax.plot([x[-1]], [y[-1]], "x", color="black", markersize=9)
    ax.axhline(slo, color="#555555", linestyle="--", linewidth=1.3)
    ax.annotate(
        f"limit: p99 {slo:g} ms",
        xy=(0.01, slo),
        xycoords=("axes fraction", "data"),
        xytext=(0, 4),
        textcoords="offset points",
        fontsize=8.5,
        color="#555555",
    )
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(PLAIN)
    ax.yaxis.set_minor_formatter(FuncFormatter(minor_2_5))
    ax.set_xlabel("connected clients")
    ax.set_ylabel("p99 delivery latency (ms, log scale)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(
        fontsize=8.5,
        title="capacity at the limit (x: where the search stopped)",
        title_fontsize=8.5,
    )
    fig.suptitle(
        f"Capacity: clients each transport holds with p99 under {slo:g} ms\n{run.title_suffix()}",
        fontsize=11,
    )
    fig.tight_layout()
    path = out / "capacity.png"
    save_figure(fig, path)
    plt.close(fig)
    return path
