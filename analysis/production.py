"""What each production layer costs (`pushpull production`, docs/production.md): per transport,
the same load on five stacks measured side by side in one run: direct, TLS, nginx, nginx + TLS,
and nginx + TLS + 2 processes on Redis. The table gives p50/p99, the server side's CPU per
delivery split by component (the server processes, nginx, Redis), the bytes per delivery at the
client's edge (TLS records included) and the first connect; the chart draws the CPU split and
the p50 per stack.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis.results import Run  # noqa: E402
from analysis.style import (  # noqa: E402
    label,
    markdown_table,
    rank,
    save_figure,
    transport_order,
    write_text_inside,
)

# (name, tls, proxy, server processes on a queue): what `pushpull production` measures
STACKS = (
    ("direct", False, None, 1),
    ("TLS", True, None, 1),
    ("nginx", False, "nginx", 1),
    ("nginx + TLS", True, "nginx", 1),
    ("nginx + TLS + 2 procs on Redis", True, "nginx", 2),
)
COMPONENTS = (("server processes", "#4c72b0"), ("nginx", "#55a868"), ("Redis", "#c44e52"))


def stack_of(cell: dict) -> str | None:
    for name, secure, proxy, procs in STACKS:
        if (cell.get("tls"), cell.get("proxy"), cell["server_procs"]) == (secure, proxy, procs):
            return name
    return None


def cpu_split(cell: dict) -> dict[str, float | None]:
    """us of CPU per delivery on the server side, by component: the servers' figure includes
    Redis's (queue_cpu_us_per_delivery), so Redis is taken out of it and shown on its own."""
    total = cell.get("server_cpu_us_per_delivery")
    redis = cell.get("queue_cpu_us_per_delivery") or 0.0
    nginx = (cell.get("proxy_figures") or {}).get("cpu_us_per_delivery") or 0.0
    servers = None if total is None else total - redis
    return {"server processes": servers, "nginx": nginx, "Redis": redis}


def edge_bytes(cell: dict) -> float | None:
    """Bytes per delivery where the client's bytes cross: nginx's client edge when it is in
    front, else the server's own socket (both TLS records included)."""
    figures = cell.get("proxy_figures")
    if figures is not None:
        return figures.get("edge_bytes_per_delivery")
    return cell.get("bytes_per_delivery")


def rows(run: Run) -> list[dict]:
    found = []
    for cell in run.points():
        stack = stack_of(cell)
        if stack is None or not cell["latency_us"]["count"]:
            continue
        split = cpu_split(cell)
        found.append(
            {
                "transport": cell["transport"],
                "stack": stack,
                "p50_ms": cell["latency_us"]["p50"] / 1000,
                "p99_ms": cell["latency_us"]["p99"] / 1000,
                "lost": cell["lost"],
                "cpu_us": split,
                "cpu_total_us": None
                if split["server processes"] is None
                else round(sum(v or 0 for v in split.values()), 1),
                "bytes_per_delivery": edge_bytes(cell),
                "first_connect_ms": None
                if not cell.get("first_connect_us")
                else cell["first_connect_us"]["p50"] / 1000,
                "clients": cell["clients"],
                "cell": cell["name"],
            }
        )
    order = [name for name, *_ in STACKS]
    return sorted(found, key=lambda r: (rank(r["transport"]), order.index(r["stack"])))


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(found: list[dict]) -> str:
    header = [
        "transport", "stack", "p50 ms", "p99 ms", "lost", "server us/del", "nginx us/del",
        "Redis us/del", "total us/del", "bytes/del", "first connect ms",
    ]  # fmt: skip
    body = [
        [
            label(r["transport"]), r["stack"], number(r["p50_ms"]), number(r["p99_ms"]),
            str(r["lost"]), number(r["cpu_us"]["server processes"]), number(r["cpu_us"]["nginx"]),
            number(r["cpu_us"]["Redis"]), number(r["cpu_total_us"]),
            number(r["bytes_per_delivery"], 0), number(r["first_connect_ms"]),
        ]
        for r in found
    ]  # fmt: skip
    return markdown_table(header, body)


def draw(found: list[dict], path: Path, title: str) -> None:
    """Per transport, a group of five bars (one per stack): the server side's CPU per delivery
    stacked by component; the p50 above each bar."""
    names = transport_order({r["transport"] for r in found})
    stacks = [name for name, *_ in STACKS]
    fig, ax = plt.subplots(figsize=(12, 5.5))
    width = 0.8 / len(stacks)
    for t_index, transport in enumerate(names):
        for s_index, stack in enumerate(stacks):
            row = next(
                (r for r in found if r["transport"] == transport and r["stack"] == stack), None
            )
            if row is None:
                continue
            x = t_index + (s_index - (len(stacks) - 1) / 2) * width
            bottom = 0.0
            for component, colour in COMPONENTS:
                value = row["cpu_us"][component] or 0.0
                ax.bar(x, value, width * 0.92, bottom=bottom, color=colour,
                       edgecolor="white", linewidth=0.4,
                       hatch="//" if "TLS" in stack else None)  # fmt: skip
                bottom += value
            ax.text(x, bottom, f"{row['p50_ms']:.0f}" if row["p50_ms"] >= 10 else f"{row['p50_ms']:.1f}",
                    ha="center", va="bottom", fontsize=6.5, rotation=90)  # fmt: skip
    ax.set_xticks(range(len(names)), [label(n).replace(" (", "\n(") for n in names])
    ax.set_ylabel("server-side CPU per delivery (us)")
    ax.set_xlabel(
        "transport; bars left to right: " + ", ".join(stacks) + " (hatched: TLS); "
        "number on a bar: p50 delivery latency (ms)",
        fontsize=8,
    )
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, c in COMPONENTS]
    ax.legend(handles, [name for name, _ in COMPONENTS], loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_production(run: Run, out: Path) -> Path | None:
    """charts/production.png, with production.md and production.json beside summary.json, of a
    run that measured more than one stack; else None."""
    found = rows(run)
    if len({r["stack"] for r in found}) < 2:
        return None
    clients = sorted({r["clients"] for r in found})
    rates = sorted({c["rate"] for c in run.cells})
    title = (
        f"What each production layer costs: {', '.join(map(str, clients))} clients, "
        f"{', '.join(f'{r:g}' for r in rates)} events/s ({run.path.name})"
    )
    path = out / "production.png"
    draw(found, path, title)
    write_text_inside(run.path, "production.json", json.dumps(found, indent=1) + "\n")
    write_text_inside(run.path, "production.md", f"# {title}\n\n{table(found)}")
    return path
