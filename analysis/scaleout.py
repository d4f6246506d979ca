"""The scale-out chart: per transport, what one process without a queue, one process on Redis
and several processes on Redis deliver (p50 and p99) and cost (server CPU per delivery, Redis's
share drawn apart). Drawn when a run varies --server-procs or --message-queue."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis.results import Run  # noqa: E402
from analysis.style import color, label, save_figure, transport_order  # noqa: E402
from pushpull.core import variants  # noqa: E402


def setup_of(cell: dict) -> tuple[int, bool]:
    return cell.get("server_procs", 1), cell.get("message_queue") is not None


def setup_text(setup: tuple[int, bool]) -> str:
    procs, queued = setup
    return f"{procs} process{'es' if procs > 1 else ''}" + (" + Redis" if queued else ", no queue")


def stack_of(cell: dict) -> tuple[bool, str | None]:
    """What stands in front of the servers: TLS, a proxy (docs/production.md)."""
    return bool(cell.get("tls")), cell.get("proxy")


def like_for_like(cells: list[dict]) -> list[dict]:
    """The cells whose front (TLS, proxy) is that of the run's scaled-out cells, so that a
    setup is compared with one process on the same stack, not with whichever came last."""
    scaled = [c for c in cells if setup_of(c) != (1, False)]
    if not scaled:
        return cells
    front = stack_of(scaled[0])
    return [c for c in cells if stack_of(c) == front]


def plot_scaleout(run: Run, out: Path) -> Path | None:
    cells = like_for_like([c for c in run.points() if c["latency_us"]["count"]])
    setups = sorted({setup_of(c) for c in cells}, key=lambda s: (s[1], s[0]))
    if len(setups) < 2 and not any(s[1] or s[0] > 1 for s in setups):
        return None
    clients = max(c["clients"] for c in cells)  # the largest load the run put on every setup
    chosen = {(c["transport"], setup_of(c)): c for c in cells if c["clients"] == clients}
    names = transport_order(t for t, _ in chosen)
    width = 0.8 / len(setups)
    fig, (lat_ax, cpu_ax) = plt.subplots(1, 2, figsize=(13, 5.4))
    hatches = ["", "//", "xx", "..", "\\\\"]
    shared = False
    for k, setup in enumerate(setups):
        for i, name in enumerate(names):
            cell = chosen.get((name, setup))
            if cell is None:
                continue
            x = i - 0.4 + width * (k + 0.5)
            p50, p99 = cell["latency_us"]["p50"] / 1000, cell["latency_us"]["p99"] / 1000
            style = {"color": color(name), "hatch": hatches[k % len(hatches)], "edgecolor": "white"}
            lat_ax.bar(x, p99, width * 0.92, alpha=0.35, **style)
            lat_ax.bar(x, p50, width * 0.92, **style)
            total = cell["server_cpu_us_per_delivery"]
            queue = cell.get("queue_cpu_us_per_delivery") or 0.0
            if total is not None:
                cpu_ax.bar(x, total - queue, width * 0.92, **style)
                if queue:
                    cpu_ax.bar(x, queue, width * 0.92, bottom=total - queue, color="#444444")
            flags = []
            if cell.get("lost"):
                flags.append(f"lost {cell['lost']}")
            if cell.get("client_bound"):
                flags.append("client-bound")
            shared |= bool(cell.get("contention"))
            if flags:
                lat_ax.annotate(
                    "\n".join(flags), (x, p99), ha="center", va="bottom", fontsize=7, rotation=90
                )
    for ax in (lat_ax, cpu_ax):
        ax.set_xticks(range(len(names)), [textwrap.fill(label(n), 12) for n in names])
        ax.grid(axis="y", alpha=0.3)
    lat_ax.set_ylabel("delivery latency (ms): solid p50, pale p99")
    lat_ax.set_title(f"Latency at {clients} clients")
    cpu_ax.set_ylabel("server CPU per delivery (us), Redis's share in dark grey")
    cpu_ax.set_title("Cost per delivery, server processes + Redis")
    handles = [
        plt.Rectangle(
            (0, 0), 1, 1, facecolor="#bbbbbb", hatch=hatches[k % len(hatches)], edgecolor="white"
        )
        for k in range(len(setups))
    ] + [plt.Rectangle((0, 0), 1, 1, facecolor="#444444")]
    fig.legend(
        handles,
        [setup_text(s) for s in setups] + ["Redis's own CPU"],
        loc="lower center",
        ncol=len(setups) + 1,
        frameon=False,
    )
    lat_ax.set_ylim(top=lat_ax.get_ylim()[1] * 1.12)  # room for the flags above the bars
    front = ", ".join(variants.words(cells[0], {"proxy", "tls"}))
    fig.suptitle(
        "Beyond one process: one event stream shared through Redis"
        + (f" ({front})" if front else "")
    )
    if shared:
        fig.text(
            0.5, 0.065,
            "On this machine the queued setups shared cores (server processes on one core, Redis "
            "beside them and Locust; `contention` in summary.json): they show what the queue "
            "costs, not what more processes gain.",
            ha="center", fontsize=8.5, color="#444444", wrap=True,
        )  # fmt: skip
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    path = out / "scaleout.png"
    save_figure(fig, path)
    plt.close(fig)
    return path
