"""timeline.png: one client of each transport over the first seconds of the window: when each
event was published, when it arrived, and (for the polling clients) when each poll was out, so
polling's staircase shows against push's immediacy."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from analysis.results import Run  # noqa: E402
from analysis.style import color, label, rank, save_figure  # noqa: E402

SHOWN_S = 4.0


def load_timelines(run: Run, cell: dict) -> list[dict]:
    """Every recorded client timeline of the cell, over its load-generator processes (files
    of version 1 held one, under `timeline`)."""
    found = []
    for path in sorted((run.path / cell["name"]).glob("loadgen-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        timelines = data.get("timelines") or ([data["timeline"]] if data.get("timeline") else [])
        found += [t for t in timelines if t["events"]]
    return found


def ms(value_us: float) -> str:
    return f"{value_us / 1000:.1f}" if value_us < 10_000 else f"{value_us / 1000:.0f}"


def mean_wait_us(timeline: dict) -> float:
    waits = [(t_recv - t_pub) / 1000 for _seq, t_pub, t_recv in timeline["events"]]
    return sum(waits) / len(waits)


def typical_timeline(run: Run, cell: dict) -> tuple[dict, int] | None:
    """The recorded client whose mean wait is nearest the cell's median delivery latency (a
    client drawn at random could be a lucky one: a short-poll client whose polls fall just
    after each publish), and how many clients were recorded."""
    timelines = load_timelines(run, cell)
    median = cell["latency_us"]["p50"]
    if not timelines or median is None:
        return None
    chosen = min(timelines, key=lambda t: abs(mean_wait_us(t) - median))
    return chosen, len(timelines)


def chosen_cells(run: Run) -> list[dict]:
    """Per transport, its cell with the fewest clients (at the first rate and poll interval)."""
    chosen: dict[str, dict] = {}
    for cell in sorted(
        run.points(), key=lambda c: (c["clients"], c["rate"], c["poll_interval"] or 0)
    ):
        chosen.setdefault(cell["transport"], cell)
    return sorted(chosen.values(), key=lambda c: rank(c["transport"]))


def plot_timeline(run: Run, out: Path) -> Path | None:
    rows = [
        (cell, *typical) for cell in chosen_cells(run) if (typical := typical_timeline(run, cell))
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(11, 1.0 + 0.9 * len(rows)))
    for y, (cell, timeline, _recorded) in enumerate(reversed(rows)):
        draw_client_row(ax, y, cell, timeline)
    ax.set_yticks([])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(0, SHOWN_S)
    ax.set_xlabel("time since the window opened (s)")
    ax.grid(True, axis="x", alpha=0.3)
    handles = legend_handles()
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.28 if len(rows) > 2 else -0.45),
        ncol=3,
        fontsize=8.5,
        frameon=False,
    )
    clients = ", ".join(sorted({str(c["clients"]) for c, _, _ in rows}))
    counts = sorted({r for _, _, r in rows})
    recorded = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    fig.suptitle(
        f"A typical client's view ({clients} clients connected): publish and arrival of each "
        f"event\nper transport, of {recorded} recorded clients the one whose mean wait is nearest "
        f"the median delivery latency; {run.title_suffix()}",
        fontsize=10.5,
    )
    fig.subplots_adjust(left=0.2, right=0.98, top=0.8, bottom=0.3 if len(rows) > 2 else 0.4)
    path = out / "timeline.png"
    save_figure(fig, path)
    plt.close(fig)
    return path


def draw_client_row(ax, y: int, cell: dict, timeline: dict) -> None:
    """One transport's typical client: each event's publish (a tick), its wait (a line) and
    its arrival (a dot), the polls answered (triangles), and the row's name and mean wait."""
    start = cell["window"]["start_ns"]
    hue = color(cell["transport"])
    answers = [(t_answered - start) / 1e9 for _t_sent, t_answered in timeline.get("polls", [])]
    shown = [a for a in answers if 0 <= a <= SHOWN_S]
    ax.plot(shown, [y - 0.3] * len(shown), "^", color=hue, alpha=0.6, markersize=4)
    for _seq, t_pub, t_recv in timeline["events"]:
        pub, arrived = (t_pub - start) / 1e9, (t_recv - start) / 1e9
        if pub > SHOWN_S:
            continue
        ax.plot([pub, pub], [y - 0.12, y + 0.22], color="#666666", linewidth=1)
        ax.plot([pub, arrived], [y + 0.05, y + 0.05], color=hue, linewidth=1)
        ax.plot([arrived], [y + 0.05], "o", color=hue, markersize=5)
    name = label(cell["transport"]).replace(" (", "\n(")
    if cell["poll_interval"]:
        name += f"\nevery {cell['poll_interval']:g} s"
    name += f"\nwait {ms(mean_wait_us(timeline))} ms (p50 {ms(cell['latency_us']['p50'])})"
    ax.text(-0.02, y, name, ha="right", va="center", fontsize=9, transform=ax.get_yaxis_transform())


def legend_handles() -> list[Line2D]:
    return [
        Line2D(
            [],
            [],
            color="#666666",
            marker="|",
            linestyle="",
            markersize=10,
            label="event published",
        ),
        Line2D(
            [],
            [],
            color="black",
            marker="o",
            linestyle="-",
            linewidth=1,
            label="arrived at this client (line: the wait)",
        ),
        Line2D(
            [],
            [],
            color="black",
            alpha=0.6,
            marker="^",
            linestyle="",
            markersize=5,
            label="a poll answered",
        ),
    ]
