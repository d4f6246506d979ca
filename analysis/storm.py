"""The reconnect storm (`pushpull storm`): every connection dropped at once mid-run. One chart
(storm.png: the share of dropped clients welcomed again, and caught up, against the time since
the drop, one colour per transport), one table and one findings sentence per storm cell."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis import style  # noqa: E402
from analysis.results import Run  # noqa: E402
from analysis.style import color, label, rank, save_figure  # noqa: E402


def storm_cells(cells: list[dict]) -> list[dict]:
    return sorted(
        (c for c in cells if c.get("recovery")),
        key=lambda c: (c["clients"], rank(c["transport"]), bool(c.get("resume"))),
    )


def name_of(cell: dict) -> str:
    if cell.get("resume") is None:
        return label(cell["transport"])
    return f"{label(cell['transport'])}, {'with' if cell['resume'] else 'without'} resume"


def seconds(value) -> str:
    return "never" if value is None else f"{value:.3f}"


HEADER = [
    "transport", "clients", "dropped", "back 50/99/100% s", "caught up 50/99/100% s",
    "never back", "gap lost / owed", "failed reconnects", "server CPU % before / after",
]  # fmt: skip


def rows(cells: list[dict]) -> list[list[str]]:
    out = []
    for c in storm_cells(cells):
        s = c["recovery"]
        back, caught = s["reconnected_s"], s["caught_up_s"]
        out.append(
            [
                name_of(c),
                str(c["clients"]),
                str(s["clients_dropped"]),
                " / ".join(seconds(back[k]) for k in ("p50", "p99", "p100")),
                " / ".join(seconds(caught[k]) for k in ("p50", "p99", "p100")),
                str(s["never_back"]),
                "-" if c.get("gap_owed") is None else f"{c['gap_lost']} / {c['gap_owed']}",
                str(c["errors"]),
                f"{s['server_cpu_percent_before']} / {s['server_cpu_percent_after']}",
            ]
        )
    return out


def markdown_table(cells: list[dict]) -> str:
    return style.markdown_table(HEADER, rows(cells))


def storm_notes(cells: list[dict]) -> list[str]:
    notes = []
    for c in storm_cells(cells):
        s = c["recovery"]
        caught = s["caught_up_s"]["p100"]
        lost = c.get("gap_lost")
        notes.append(
            f"Storm, {c['clients']} clients of {name_of(c)} dropped at once: 99% were back "
            f"after {seconds(s['reconnected_s']['p99'])} s and all after "
            f"{seconds(s['reconnected_s']['p100'])} s; "
            + (
                f"all had every missed event after {caught:.2f} s"
                if caught is not None
                else f"{s['never_caught_up']} never got the events published while they were away"
            )
            + (f" ({lost} of {c['gap_owed']} lost)" if lost else "")
            + f"; {c['errors']} reconnect attempts failed."
        )
    return notes


def plot_storm(run: Run, out: Path) -> Path | None:
    cells = storm_cells(run.points())
    if not cells:
        return None
    clients = max(c["clients"] for c in cells)
    fig, ax = plt.subplots(figsize=(11, 6.4))
    longest = 0.0
    for cell in (c for c in cells if c["clients"] == clients):
        curve = cell["recovery"]["curve"]
        shares = list(range(101))
        for key, dash, what in (
            ("reconnected_s", "-", "back"),
            ("caught_up_s", "--", "caught up"),
        ):
            points = [(t, k) for t, k in zip(curve[key], shares) if t is not None]
            if len(points) <= 1:
                if key == "caught_up_s":
                    ax.plot([], [], dash, color=color(cell["transport"]),
                            label=f"{name_of(cell)}: never caught up (missed events not replayed)")  # fmt: skip
                continue
            times, ks = zip(*points)
            longest = max(longest, times[-1])
            ax.step(times, ks, dash, where="post", color=color(cell["transport"]), lw=2,
                    label=f"{name_of(cell)}: {what}")  # fmt: skip
    ax.set_xlim(left=-0.1, right=max(1.0, longest * 1.08))
    ax.set_ylim(0, 102)
    ax.set_xlabel("seconds since every connection was dropped")
    ax.set_ylabel("share of dropped clients (%)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2, frameon=False)
    ax.set_title(
        f"Reconnect storm: {clients} clients dropped at once; solid = welcomed again, dashed = "
        "every missed event received",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.04 + 0.025 * ((len(labels) + 1) // 2), 1, 1))
    path = out / "storm.png"
    save_figure(fig, path)
    plt.close(fig)
    return path
