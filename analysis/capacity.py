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
    low, high = result.get("capacity_range") or [None, None]
    refined = len(result.get("measurements") or []) > len(
        {m[0] for m in result.get("measurements") or []}
    )
    if refined and low is not None and high is not None:
        return f"[{low}, {high}) clients"
    if refined and low is not None:
        if result.get("stopped_at") is None:
            return f">= {low} clients (the search's --max)"
        return f">= {low} clients (no count was over the limit in every run)"
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
        by_count: dict[int, list[float]] = {}
        for clients, p99 in steps:
            by_count.setdefault(clients, []).append(p99)
        x = sorted(by_count)
        y = [sorted(by_count[c])[len(by_count[c]) // 2] for c in x]  # the median of repeats
        ax.plot(
            x,
            y,
            "-o",
            color=color(transport),
            label=f"{label(transport)}: {capacity_text(transport, result)}",
        )
        repeated = [(c, v) for c, v in steps if len(by_count[c]) > 1]
        if repeated:  # every repeat as a small dot beside the median
            ax.plot(*zip(*repeated), ".", color=color(transport), alpha=0.6)
        if result["stopped_at"] is not None:
            at = result["stopped_at"]
            ax.plot([at], [y[x.index(at)] if at in x else y[-1]], "x", color="black", markersize=9)
        for clients, _outcome, p99, ci in result.get("measurements") or []:
            if ci is not None and p99 is not None:  # each measurement's 95% interval
                ax.errorbar([clients], [p99], yerr=[[max(0, p99 - ci[0])], [max(0, ci[1] - p99)]],
                            fmt="none", ecolor=color(transport), capsize=3, alpha=0.7)  # fmt: skip
        low, high = result.get("capacity_range") or [None, None]
        if low is not None and high is not None and capacity.get("repeats", 1) > 1:
            ax.axvspan(low, high, color=color(transport), alpha=0.12)
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
        title="capacity at the limit (x: where the search stopped; shaded: the range)",
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
