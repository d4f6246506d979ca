"""What each approach costs, and where polling falls behind: charts from a run's results.

- cost_per_delivery.png: bytes on the wire, server CPU, HTTP requests per delivered message and
  server memory per client, per transport, at each client count;
- latency_vs_rate.png (when the run swept --rate): latency against publish rate per transport;
- polling_vs_interval.png (when it swept --poll-interval): requests per delivery and the share
  of empty polls against the poll interval (Bozdag et al.'s "unnecessary pulls").
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from analysis.results import Run, series_key, series_label  # noqa: E402
from analysis.style import color, label, minor_2_5, plain_number, rank, save_figure, transport_order  # noqa: E402
from pushpull.core import transports  # noqa: E402

PLAIN = FuncFormatter(plain_number)
COSTS = [
    (
        "bytes_per_delivery",
        "bytes on the wire per delivery\n(both directions, headers and framing)",
        1,
    ),
    ("server_cpu_us_per_delivery", "server CPU per delivery (us)", 1),  # see cost_value
    ("requests_per_delivery", "HTTP requests per delivery (over a websocket: not counted)", 1),
    ("server_rss_per_client_bytes", "server memory per connected client (KiB)", 1 / 1024),
]


def cost_value(cell: dict, field: str) -> float | None:
    """A cell's figure for the cost chart; server CPU is the marginal cost (the server's idle
    baseline subtracted) where the run measured the baseline, the raw figure otherwise."""
    if field == "server_cpu_us_per_delivery":
        marginal = cell.get("server_marginal_cpu_us_per_delivery")
        if marginal is not None:
            return marginal
    return cell.get(field)


def cpu_title(cells: list[dict]) -> str:
    if any(c.get("server_marginal_cpu_us_per_delivery") is not None for c in cells):
        return "server CPU per delivery (us), the server's idle baseline subtracted"
    return "server CPU per delivery (us)"


def plot_cost_per_delivery(run: Run, out: Path) -> Path:
    """One bar per measured series (transport and its variant, and rate when several were run)
    at each client count: bars never blend different measurements."""
    cells = run.points()
    several_rates = len({c["rate"] for c in cells}) > 1

    def bar_key(cell: dict) -> tuple:
        return (*series_key(cell, run), cell["rate"] if several_rates else None)

    keys = sorted({bar_key(c) for c in cells}, key=lambda k: (rank(k[0]), k[1], k[2] or 0))
    clients = sorted({c["clients"] for c in cells})
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.2))
    width = 0.8 / max(len(keys), 1)
    hatches = ["", "//", "..", "xx", "\\\\"]
    for ax, (field, title, scale) in zip(axes.flat, COSTS):
        for i, key in enumerate(keys):
            same_transport = [k for k in keys if k[0] == key[0]]
            xs, ys = [], []
            for j, n in enumerate(clients):
                match = [
                    c
                    for c in cells
                    if bar_key(c) == key and c["clients"] == n and cost_value(c, field) is not None
                ]
                if match:
                    xs.append(j + (i - (len(keys) - 1) / 2) * width)
                    ys.append(cost_value(match[0], field) * scale)
            if xs:
                name = series_label(key[:2]) + (f" @ {key[2]:g}/s" if key[2] is not None else "")
                ax.bar(
                    xs,
                    ys,
                    width=width * 0.95,
                    color=color(key[0]),
                    label=name,
                    hatch=hatches[same_transport.index(key) % len(hatches)],
                    edgecolor="white",
                )
        ax.set_xticks(range(len(clients)), [str(n) for n in clients])
        ax.set_xlabel("connected clients")
        ax.set_title(
            cpu_title(cells) if field == "server_cpu_us_per_delivery" else title, fontsize=10
        )
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0][1].get_legend_handles_labels()
    # as many columns as the longest label leaves room for (about 190 characters a row here)
    columns = max(1, min(len(keys), 4, 190 // (max(map(len, labels), default=1) + 8)))
    rows = -(-len(keys) // columns)
    fig.set_figheight(8.2 + 0.2 * max(0, rows - 3))
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=columns,
        fontsize=8.5,
        bbox_to_anchor=(0.5, 0.94),
    )
    fig.suptitle(f"Cost per delivered message, per transport\n{run.title_suffix()}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.92 - 0.025 * (rows - 1) * 8.2 / fig.get_figheight()))
    path = out / "cost_per_delivery.png"
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_latency_vs_rate(run: Run, out: Path) -> Path | None:
    cells = run.points()
    rates = sorted({c["rate"] for c in cells})
    if len(rates) < 2:
        return None
    clients = sorted({c["clients"] for c in cells})
    fig, axes = plt.subplots(
        1, len(clients), figsize=(6.4 * len(clients), 5), squeeze=False, sharey=True
    )
    for ax, n in zip(axes[0], clients):
        for transport in transport_order(c["transport"] for c in cells):
            series = sorted(
                (
                    c
                    for c in cells
                    if c["clients"] == n
                    and c["transport"] == transport
                    and c["latency_us"]["count"]
                ),
                key=lambda c: c["rate"],
            )
            intervals = sorted(
                {c["poll_interval"] for c in series if c["poll_interval"] is not None}
            ) or [None]
            for interval in intervals[:1]:  # one short-poll interval per panel keeps it readable
                points = [c for c in series if c["poll_interval"] == interval]
                if not points:
                    continue
                x = [c["rate"] for c in points]
                name = label(transport) + (
                    f" (every {interval:g} s)" if interval is not None else ""
                )
                ax.plot(
                    x,
                    [c["latency_us"]["p50"] / 1000 for c in points],
                    "-o",
                    color=color(transport),
                    label=f"{name} p50",
                )
                ax.plot(
                    x,
                    [c["latency_us"]["p99"] / 1000 for c in points],
                    "--^",
                    color=color(transport),
                    label=f"{name} p99",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(rates)
        ax.xaxis.set_major_formatter(PLAIN)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(PLAIN)
        ax.yaxis.set_minor_formatter(FuncFormatter(minor_2_5))
        ax.set_xlabel("publish rate (events/s, log scale)")
        ax.set_title(f"{n} clients", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("delivery latency (ms, log scale)")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(
        "Delivery latency vs publish rate (polling pays a round trip per event, push does not)"
        f"\n{run.title_suffix()}",
        fontsize=10.5,
    )
    fig.tight_layout(rect=(0, 0.1 + 0.03 * (len(labels) // 4), 1, 1))
    path = out / "latency_vs_rate.png"
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_polling_vs_interval(run: Run, out: Path) -> Path | None:
    cells = [
        c
        for c in run.points()
        if transports.get(c["transport"]).periodic and c.get("requests_per_delivery")
    ]
    intervals = sorted({c["poll_interval"] for c in cells})
    if len(intervals) < 2:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = ["-o", "--s", ":D", "-.^"]
    groups = sorted({(c["transport"], c["rate"], c["clients"]) for c in cells})
    several = len({g[0] for g in groups}) > 1
    for k, (transport, rate, n) in enumerate(groups):
        points = sorted(
            (c for c in cells if (c["transport"], c["rate"], c["clients"]) == (transport, rate, n)),
            key=lambda c: c["poll_interval"],
        )
        x = [c["poll_interval"] for c in points]
        name = (f"{label(transport)}, " if several else "") + f"{rate:g} events/s, {n} clients"
        style = styles[k % len(styles)]
        left.plot(
            x,
            [c["requests_per_delivery"] for c in points],
            style,
            color=color(transport),
            label=name,
        )
        right.plot(
            x,
            [100 * (c["empty_poll_share"] or 0) for c in points],
            style,
            color=color(transport),
            label=name,
        )
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(intervals)
        ax.xaxis.set_major_formatter(PLAIN)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("poll interval (s, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    left.set_yscale("log")
    left.yaxis.set_major_formatter(PLAIN)
    left.yaxis.set_minor_formatter(FuncFormatter(minor_2_5))
    left.set_ylabel("HTTP requests per delivered event (log scale)")
    left.set_title("requests per delivery", fontsize=10)
    right.set_ylabel("polls that returned nothing (%)")
    right.set_ylim(0, 100)
    right.set_title("unnecessary pulls (empty polls)", fontsize=10)
    left.legend(fontsize=8)
    fig.suptitle(
        f"What short polling costs: requests and empty polls vs poll interval\n{run.title_suffix()}",
        fontsize=11,
    )
    fig.tight_layout()
    path = out / "polling_vs_interval.png"
    save_figure(fig, path)
    plt.close(fig)
    return path
