"""The load-generator benchmark's report: is what we measure the server or the client?

For each transport, client and number of Locust processes: medians over repeats of delivery
latency, server CPU per delivery, load-generator CPU per delivery and their ratio (measured side
by side in each cell), and how many runs were client-bound. Written as perf.md (a table) and
perf.json (one row per transport and variant).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from statistics import median

from analysis.results import load_run
from analysis.style import rank

RATIO_TARGET = 0.5  # the load generator should cost at most half the server's CPU per delivery


def _median(values):
    values = [v for v in values if v is not None]
    return median(values) if values else None


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def perf_rows(cells: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in cells:
        key = (cell["transport"], cell.get("client"), cell["loadgen_procs"], cell["clients"])
        groups[key].append(cell)
    rows = []
    for (transport, client, procs, clients), group in sorted(
        groups.items(), key=lambda kv: (rank(kv[0][0]), kv[0][1] or "", kv[0][2], kv[0][3])
    ):
        ratios = [
            c["loadgen_cpu_us_per_delivery"] / c["server_cpu_us_per_delivery"]
            for c in group
            if c["loadgen_cpu_us_per_delivery"] and c["server_cpu_us_per_delivery"]
        ]
        rows.append({
            "transport": transport,
            "client": client or "lean",
            "loadgen_procs": procs,
            "clients": clients,
            "p50_us": _median(c["latency_us"]["p50"] for c in group),
            "p99_us": _median(c["latency_us"]["p99"] for c in group),
            "server_cpu_us_per_delivery": _median(c["server_cpu_us_per_delivery"] for c in group),
            "loadgen_cpu_us_per_delivery": _median(c["loadgen_cpu_us_per_delivery"] for c in group),
            "ratio": None if not ratios else round(median(ratios), 3),
            "client_bound_runs": sum(bool(c.get("client_bound")) for c in group),
            "runs": len(group),
            "lost": sum(c["lost"] for c in group),
        })  # fmt: skip
    by_key = {(r["transport"], r["client"], r["clients"], r["loadgen_procs"]): r for r in rows}
    for row in rows:
        one = by_key.get((row["transport"], row["client"], row["clients"], 1))
        row["p50_vs_1_proc"] = (
            round(row["p50_us"] / one["p50_us"], 3)
            if one and one["p50_us"] and row["p50_us"] and row["loadgen_procs"] > 1
            else None
        )
    return rows


def perf_markdown(run, rows: list[dict]) -> str:
    first = run.cells[0]
    lines = [
        f"# Load-generator benchmark, run {run.path.name}",
        "",
        f"Broadcast at {first['rate']:g} events/s, {first['duration_s']:g} s windows, "
        f"{run.manifest.get('cores')} cores ({run.manifest.get('cpu_model')}), placement "
        f"{'server and Locust on separate cores' if run.manifest.get('placement', {}).get('pinned') else 'unpinned'}. "
        "Medians over repeats; CPU in us per delivered event; ratio = load generator / server, "
        f"measured side by side in each cell (target: at most {RATIO_TARGET:g}).",
        "",
        "| transport | client | Locust procs | clients | runs | p50 ms | p99 ms | p50 vs 1 proc | server CPU us | loadgen CPU us | loadgen/server | client-bound | lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        vs = "-" if r["p50_vs_1_proc"] is None else f"{r['p50_vs_1_proc']:.2f}x"
        p50 = None if r["p50_us"] is None else r["p50_us"] / 1000
        p99 = None if r["p99_us"] is None else r["p99_us"] / 1000
        lines.append(
            f"| {r['transport']} | {r['client']} | {r['loadgen_procs']} | {r['clients']} | {r['runs']} | "
            f"{_num(p50, 1)} | {_num(p99, 1)} | {vs} | {_num(r['server_cpu_us_per_delivery'], 0)} | "
            f"{_num(r['loadgen_cpu_us_per_delivery'], 0)} | {_num(r['ratio'], 2)} | "
            f"{r['client_bound_runs']}/{r['runs']} | {r['lost']} |"
        )
    return "\n".join(lines) + "\n"


def write_perf_report(run_dir: Path) -> Path:
    """perf.md and perf.json in the run folder; returns perf.md's path."""
    run = load_run(run_dir)
    rows = perf_rows(run.cells)
    path = Path(run_dir) / "perf.md"
    path.write_text(perf_markdown(run, rows))
    (Path(run_dir) / "perf.json").write_text(
        json.dumps({"run": run.path.name, "rows": rows}, indent=1)
    )
    return path
