"""Clients that come and go (--churn-every): what each transport loses across a reconnect and
how fast a client is back and caught up. One table (summary.md and the report), one sentence
for the findings, one chart (churn.png): gap loss and catch-up time per transport, with and
without resume where the transport has the choice."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis import style  # noqa: E402
from analysis.results import Run  # noqa: E402
from analysis.style import color, rank, save_figure  # noqa: E402


def churn_cells(cells: list[dict]) -> list[dict]:
    return sorted(
        (c for c in cells if c.get("churn_every")),
        key=lambda c: (c["churn_every"], c["clients"], rank(c["transport"]), bool(c["resume"])),
    )


def resume_words(cell: dict) -> str:
    if cell.get("resume") is None:
        return "resumes by design"
    return "with resume" if cell["resume"] else "without resume"


def share_text(cell: dict) -> str:
    if cell.get("gap_owed") is None:
        return "-"
    share = cell["gap_lost_share"]
    percent = "-" if share is None else f"{100 * share:.0f}%"
    return f"{cell['gap_lost']} / {cell['gap_owed']} ({percent})"


def ms(value_us) -> str:
    return "-" if value_us is None else f"{value_us / 1000:.1f}"


HEADER = [
    "transport", "clients", "churn", "resume", "reconnects", "gap lost / owed",
    "connect p50/p99 ms", "caught up", "catch-up p50/p99 ms", "catch-up event latency p50 ms",
]  # fmt: skip


def rows(cells: list[dict]) -> list[list[str]]:
    out = []
    for c in churn_cells(cells):
        connect, catchup = c.get("connect_us") or {}, c.get("catchup_us") or {}
        out.append(
            [
                c["transport"],
                str(c["clients"]),
                f"every {c['churn_every']:g} s, away {c['churn_downtime']:g} s",
                resume_words(c),
                str(c["reconnects"]),
                share_text(c),
                f"{ms(connect.get('p50'))} / {ms(connect.get('p99'))}",
                f"{c.get('caught_up', 0)} / {c['reconnects']}",
                f"{ms(catchup.get('p50'))} / {ms(catchup.get('p99'))}",
                ms((c.get("catchup_latency_us") or {}).get("p50")),
            ]
        )
    return out


def markdown_table(cells: list[dict]) -> str:
    return style.markdown_table(HEADER, rows(cells))


def churn_notes(cells: list[dict]) -> list[str]:
    """One sentence per churn setting: each transport's gap loss, with and without resume."""
    notes = []
    groups: dict[tuple, list[dict]] = {}
    costs = resume_costs(churn_cells(cells))
    for cell in churn_cells(cells):
        if cell.get("gap_owed") is None:
            continue
        key = (cell["churn_every"], cell["churn_downtime"], cell["clients"], cell["rate"])
        groups.setdefault(key, []).append(cell)
    for (every, downtime, clients, rate), group in groups.items():
        parts = []
        for cell in group:
            words = "" if cell.get("resume") is None else f" {resume_words(cell)}"
            parts.append(
                f"{cell['transport']}{words} {cell['gap_lost']} of {cell['gap_owed']}"
                + (f" ({100 * cell['gap_lost_share']:.0f}%)" if cell["gap_lost_share"] else "")
            )
        notes.append(
            f"With {clients} clients each leaving every {every:g} s on average for {downtime:g} s "
            f"({rate:g} events/s), the events published while a client was away that it never "
            f"received: {'; '.join(parts)}."
        )
    if costs:
        notes.append(
            "What resume costs the server, CPU per delivery without -> with it: "
            + "; ".join(costs)
            + " (one run each: compare with the noise band before reading much into it)."
        )
    return notes


def resume_costs(cells: list[dict]) -> list[str]:
    pairs: dict[tuple, dict] = {}
    for cell in cells:
        if cell.get("resume") is not None and cell.get("server_cpu_us_per_delivery") is not None:
            key = (cell["transport"], cell["clients"], cell["churn_every"], cell["rate"])
            pairs.setdefault(key, {})[cell["resume"]] = cell["server_cpu_us_per_delivery"]
    return [
        f"{transport} at {clients} clients {both[False]:.0f} -> {both[True]:.0f} us"
        for (transport, clients, _every, _rate), both in pairs.items()
        if len(both) == 2
    ]


def plot_churn(run: Run, out: Path) -> Path | None:
    cells = [c for c in churn_cells(run.points()) if c.get("gap_owed") is not None]
    if not cells:
        return None
    every, downtime = cells[0]["churn_every"], cells[0]["churn_downtime"]
    clients = max(c["clients"] for c in cells)
    chosen = [
        c
        for c in cells
        if c["clients"] == clients and (c["churn_every"], c["churn_downtime"]) == (every, downtime)
    ]
    fig, (loss_ax, time_ax) = plt.subplots(1, 2, figsize=(13, 5.4))
    names = [
        c["transport"] + ("" if c.get("resume") is None else f"\n{resume_words(c)}") for c in chosen
    ]
    xs = range(len(chosen))
    for x, cell in zip(xs, chosen):
        style = {
            "color": color(cell["transport"]),
            "hatch": "//" if cell.get("resume") is False else "",
            "edgecolor": "white",
        }
        share = 100 * (cell["gap_lost_share"] or 0.0)
        loss_ax.bar(x, share, 0.7, **style)
        loss_ax.annotate(
            f"{cell['gap_lost']}/{cell['gap_owed']}", (x, share), ha="center", va="bottom",
            fontsize=8,
        )  # fmt: skip
        catchup = cell.get("catchup_us") or {}
        if catchup.get("p50") is None:
            time_ax.text(
                x, 0.03, "never caught up:\nmissed events\nnot replayed", ha="center",
                va="bottom", fontsize=8, color="#444444", transform=time_ax.get_xaxis_transform(),
            )  # fmt: skip
            continue
        p50, p99 = catchup["p50"] / 1000, catchup["p99"] / 1000
        time_ax.bar(x, p99, 0.7, alpha=0.35, **style)
        time_ax.bar(x, p50, 0.7, **style)
    for ax in (loss_ax, time_ax):
        ax.set_xticks(list(xs), names, fontsize=8)
        ax.set_xlim(-0.6, len(chosen) - 0.4)
        ax.grid(axis="y", alpha=0.3)
    loss_ax.set_ylabel("gap loss (%)\nevents published while away, never received")
    loss_ax.set_ylim(0, 110)
    loss_ax.set_title("What a reconnect loses")
    time_ax.set_ylabel("catch-up time (ms): solid p50, pale p99")
    time_ax.set_title("Reconnect begun -> every missed event received")
    fig.suptitle(
        f"Clients that come and go: {clients} clients, each leaving every {every:g} s on average, "
        f"away {downtime:g} s ({cells[0]['rate']:g} events/s)"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path = out / "churn.png"
    save_figure(fig, path)
    plt.close(fig)
    return path
