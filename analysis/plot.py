"""Charts and a summary table of one run, from its results only.

pushpull plot results/latest
    -> results/<run>/charts/latency_vs_clients.png, latency_distribution.png
    -> results/<run>/summary.md
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from analysis.capacity import plot_capacity  # noqa: E402
from analysis.churn import plot_churn  # noqa: E402
from analysis.cost import plot_cost_per_delivery, plot_latency_vs_rate, plot_polling_vs_interval  # noqa: E402
from analysis.network import plot_connect_vs_rtt, plot_latency_vs_rtt  # noqa: E402
from analysis.production import plot_production  # noqa: E402
from analysis.results import (  # noqa: E402
    NETWORK,
    PlotError,
    Run,
    load_run,
    network_panels,
    on_network,
    series_key,
    series_label,
)
from analysis.scaleout import plot_scaleout  # noqa: E402
from analysis.storm import plot_storm  # noqa: E402
from analysis.style import LINESTYLES, color, minor_2_5, plain_number, rank, save_figure  # noqa: E402
from analysis.table import write_summary_table  # noqa: E402
from analysis.timeline import plot_timeline  # noqa: E402

__all__ = ["PlotError", "plot_run", "main"]


VARIANT_MARKERS = [("o", "^"), ("s", "v"), ("D", "P"), ("X", "*")]


def plot_latency_vs_clients(run: Run, out: Path) -> Path:
    """(a) p50 and p99 delivery latency against client count, one colour per transport; hollow
    markers where the load generator was the bottleneck; the websocket floor as a line. A panel
    per publish rate, and per network when the run varied it."""
    nets = network_panels(run)
    panels = [(rate, net) for rate in sorted({c["rate"] for c in run.points()}) for net in nets]
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(8.0 * cols, 5.4 * rows), squeeze=False, sharey=True
    )
    measured = [c for c in run.points() if c["latency_us"]["count"]]
    keys = sorted({series_key(c, run, NETWORK) for c in measured}, key=lambda k: (rank(k[0]), k[1]))
    markers: dict[tuple, tuple[str, str]] = {}
    for key in keys:
        taken = sum(1 for k in markers if k[0] == key[0])
        markers[key] = VARIANT_MARKERS[taken % len(VARIANT_MARKERS)]
    any_bound = False
    floor = (run.manifest.get("floor") or {}).get("one_way_us")
    for ax, (rate, net) in zip(axes.flat, panels):
        for key in keys:
            cells = sorted(
                (
                    c
                    for c in measured
                    if c["rate"] == rate
                    and on_network(c, net)
                    and series_key(c, run, NETWORK) == key
                ),
                key=lambda c: c["clients"],
            )
            if cells:
                any_bound |= draw_series(ax, cells, key[0], markers[key])
        if floor and net is None:
            draw_floor(ax, floor)
        format_clients_axes(ax, rate, sorted({c["clients"] for c in run.points()}))
        if len(nets) > 1:
            ax.set_title(f"publish rate {rate:g} events/s, over {net or 'loopback'}", fontsize=10)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("delivery latency (ms, log scale)")
    handles = legend_handles(keys, markers, any_bound)
    axes.flat[len(panels) - 1].legend(
        handles=handles, loc="lower right", fontsize=8.5, framealpha=0.9
    )
    fig.suptitle(
        f"Delivery latency (publish to each client's receipt) vs clients\n{run.title_suffix()}",
        fontsize=11,
    )
    fig.tight_layout()
    path = out / "latency_vs_clients.png"
    save_figure(fig, path)
    plt.close(fig)
    return path


def draw_series(ax, cells: list[dict], transport: str, markers: tuple[str, str]) -> bool:
    """One series' p50 and p99 lines with their intervals and markers (hollow where the load
    generator was the bottleneck); whether any of its points was client-bound."""
    x = [c["clients"] for c in cells]
    any_bound = False
    for stat, marker in zip(("p50", "p99"), markers):
        y = [c["latency_us"][stat] / 1000 for c in cells]
        ax.plot(x, y, linestyle=LINESTYLES[stat], color=color(transport), linewidth=1.8)
        bars = [((c.get("latency_ci_us") or {}).get(stat), yi) for c, yi in zip(cells, y)]
        if any(ci for ci, _ in bars):  # the 95% interval over events (docs/intervals.md)
            low = [yi - ci[0] / 1000 if ci else 0 for ci, yi in bars]
            high = [ci[1] / 1000 - yi if ci else 0 for ci, yi in bars]
            ax.errorbar(
                x, y, yerr=[[max(0, v) for v in low], [max(0, v) for v in high]],
                fmt="none", ecolor=color(transport), elinewidth=1.2, capsize=3, alpha=0.8,
            )  # fmt: skip
        for xi, yi, c in zip(x, y, cells):
            bound = bool(c.get("client_bound"))
            any_bound |= bound
            ax.plot(
                [xi],
                [yi],
                marker=marker,
                markersize=7,
                color=color(transport),
                markerfacecolor="white" if bound else color(transport),
                markeredgewidth=1.6,
            )
    return any_bound


def draw_floor(ax, floor_us: float) -> None:
    """The floor: half a websocket echo round trip on this machine (manifest "floor")."""
    ax.axhline(floor_us / 1000, color="#555555", linestyle=":", linewidth=1.4)
    ax.annotate(
        f"floor: half a websocket echo round trip ({floor_us:.0f} us)",
        xy=(0.01, floor_us / 1000),
        xycoords=("axes fraction", "data"),
        xytext=(0, 4),
        textcoords="offset points",
        fontsize=8,
        color="#555555",
    )


def format_clients_axes(ax, rate: float, client_counts: list[int]) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("connected clients (log scale)")
    ax.set_title(f"publish rate {rate:g} events/s", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.xaxis.set_major_formatter(FuncFormatter(plain_number))
    ax.yaxis.set_major_formatter(FuncFormatter(plain_number))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor_2_5))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(client_counts)


def legend_handles(keys: list[tuple], markers: dict, any_bound: bool) -> list[Line2D]:
    handles = [
        Line2D(
            [], [], color=color(k[0]), linewidth=2.5, marker=markers[k][0], label=series_label(k)
        )
        for k in keys
    ]
    handles += [
        Line2D(
            [],
            [],
            color="black",
            linestyle=LINESTYLES[s],
            label=f"{s} ({'solid' if s == 'p50' else 'dashed'})",
        )
        for s in ("p50", "p99")
    ]
    handles.append(
        Line2D([], [], color="black", marker="|", markersize=10, linestyle="",
               label="bars: 95% interval over events")
    )  # fmt: skip
    if any_bound:
        handles.append(
            Line2D(
                [],
                [],
                color="black",
                linestyle="",
                marker="o",
                markerfacecolor="white",
                label="hollow: client-bound (load generator saturated)",
            )
        )
    return handles


def percentile_spectrum(histogram) -> tuple[list[float], list[float]]:
    """(1/(1-q) for q from 0 to the last recorded quantile, latency in ms): the x axis of
    HdrHistogram's plotter, where 10, 100, 1000 read as p90, p99, p99.9."""
    count = histogram.get_total_count()
    top = max(count, 2)
    xs, ys = [], []
    steps = 200
    for i in range(steps + 1):
        x = top ** (i / steps)
        q = 100.0 * (1.0 - 1.0 / x)
        xs.append(x)
        ys.append(histogram.get_value_at_percentile(q) / 1000)
    return xs, ys


def plot_distributions(run: Run, out: Path) -> Path:
    """(b) per client count, the latency distributions of all transports overlaid."""
    nets = network_panels(run)
    panels = [(n, net) for n in sorted({c["clients"] for c in run.points()}) for net in nets]
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(6.0 * cols, 4.6 * rows), squeeze=False, sharey=True
    )
    most = max((c["latency_us"]["count"] for c in run.points()), default=2)
    for ax, (n, net) in zip(axes.flat, panels):
        for cell in sorted(
            (c for c in run.points() if c["clients"] == n and on_network(c, net)),
            key=lambda c: rank(c["transport"]),
        ):
            histogram = run.histogram(cell)
            if histogram is None or histogram.get_total_count() == 0:
                continue
            xs, ys = percentile_spectrum(histogram)
            name = series_label(series_key(cell, run, NETWORK))
            if len({c["rate"] for c in run.points()}) > 1:
                name += f" @ {cell['rate']:g}/s"
            ax.plot(xs, ys, color=color(cell["transport"]), linewidth=1.8, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([t for t in (1, 2, 10, 100, 1000, 10000, 100000, 1000000) if t <= most])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: quantile_label(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(plain_number))
        ax.yaxis.set_minor_formatter(FuncFormatter(minor_2_5))
        ax.set_xlim(1, max(most, 10))
        ax.set_xlabel("percentile (log scale of 1/(1-q))")
        ax.set_title(
            f"{n} clients" + (f", over {net or 'loopback'}" if len(nets) > 1 else ""), fontsize=10
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("delivery latency (ms, log scale)")
    fig.suptitle(
        f"Delivery latency distribution per client count (percentile spectrum)\n{run.title_suffix()}",
        fontsize=11,
    )
    fig.tight_layout()
    path = out / "latency_distribution.png"
    save_figure(fig, path)
    plt.close(fig)
    return path


def quantile_label(x: float) -> str:
    if x <= 1:
        return "p0"
    q = 100 * (1 - 1 / x)
    return f"p{q:.4g}"


def plot_run(run_dir: Path) -> list[Path]:
    """Every chart of a run, plus summary.md. Returns the chart paths."""
    run = load_run(run_dir)
    measured = [c for c in run.cells if c["latency_us"]["count"]]
    if not measured:
        raise PlotError(
            f"{run_dir} has no measured cells yet (summary.json lists {len(run.cells)})"
        )
    out = run.path / "charts"
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise PlotError(
            f"{out} is not a folder of this run (a link?): charts are written only inside the run folder"
        )
    out.mkdir(exist_ok=True)
    paths = [
        plot_latency_vs_clients(run, out),
        plot_distributions(run, out),
        plot_cost_per_delivery(run, out),
    ]
    optional = (
        plot_timeline(run, out),
        plot_latency_vs_rate(run, out),
        plot_polling_vs_interval(run, out),
        plot_capacity(run, out),
        plot_scaleout(run, out),
        plot_churn(run, out),
        plot_storm(run, out),
        plot_latency_vs_rtt(run, out),
        plot_connect_vs_rtt(run, out),
        plot_production(run, out),
    )
    paths += [p for p in optional if p]
    write_summary_table(run, run.path / "summary.md")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw the charts of a pushpull run folder.")
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        for path in plot_run(args.run_dir):
            print(path)
    except PlotError as exc:
        print(f"pushpull plot: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
