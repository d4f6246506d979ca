"""The load-generator benchmark's report: is what we measure the server or the client?

For each Socket.IO client implementation and number of Locust processes: medians over repeats
of delivery latency, server CPU per delivery, load-generator CPU per delivery and their ratio
(measured side by side in each cell), and how far adding a Locust process moved p50.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import median

from analysis.results import load_run


def _median(values):
    values = [v for v in values if v is not None]
    return median(values) if values else None


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def perf_rows(cells: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in cells:
        groups[
            (cell["clients"], cell.get("socketio_client") or "lean", cell["loadgen_procs"])
        ].append(cell)
    rows = []
    for (clients, client, procs), group in sorted(groups.items()):
        ratios = [
            c["loadgen_cpu_us_per_delivery"] / c["server_cpu_us_per_delivery"]
            for c in group
            if c["loadgen_cpu_us_per_delivery"] and c["server_cpu_us_per_delivery"]
        ]
        rows.append({
            "clients": clients,
            "client": client,
            "procs": procs,
            "repeats": len(group),
            "p50_ms": _ms(_median(c["latency_us"]["p50"] for c in group)),
            "p99_ms": _ms(_median(c["latency_us"]["p99"] for c in group)),
            "server_us": _median(c["server_cpu_us_per_delivery"] for c in group),
            "loadgen_us": _median(c["loadgen_cpu_us_per_delivery"] for c in group),
            "ratio": _median(ratios),
            "client_bound": sum(bool(c.get("client_bound")) for c in group),
            "lost": sum(c["lost"] for c in group),
        })  # fmt: skip
    by_key = {(r["clients"], r["client"], r["procs"]): r for r in rows}
    for row in rows:
        one = by_key.get((row["clients"], row["client"], 1))
        row["p50_vs_1_proc"] = (
            row["p50_ms"] / one["p50_ms"] if one and one["p50_ms"] and row["p50_ms"] else None
        )
    return rows


def perf_markdown(run_dir: Path) -> str:
    run = load_run(run_dir)
    rows = perf_rows(run.cells)
    lines = [
        f"# Load-generator benchmark, run {run.path.name}",
        "",
        f"Socket.IO broadcast at {run.cells[0]['rate']:g} events/s, {run.cells[0]['duration_s']:g} s "
        f"windows, {run.manifest.get('cores')} cores ({run.manifest.get('cpu_model')}), placement "
        f"{'server and Locust on separate cores' if run.manifest.get('placement', {}).get('pinned') else 'unpinned'}. "
        "Medians over repeats; CPU in us per delivered event; ratio = load generator / server, "
        "measured side by side in each cell.",
        "",
        "| clients | client | Locust procs | repeats | p50 ms | p99 ms | p50 vs 1 proc | server CPU us | loadgen CPU us | loadgen/server | client-bound | lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        vs = "-" if r["p50_vs_1_proc"] is None or r["procs"] == 1 else f"{r['p50_vs_1_proc']:.2f}x"
        lines.append(
            f"| {r['clients']} | {r['client']} | {r['procs']} | {r['repeats']} | {_num(r['p50_ms'], 1)} | "
            f"{_num(r['p99_ms'], 1)} | {vs} | {_num(r['server_us'], 0)} | {_num(r['loadgen_us'], 0)} | "
            f"{_num(r['ratio'], 2)} | {r['client_bound']}/{r['repeats']} | {r['lost']} |"
        )
    return "\n".join(lines) + "\n"


def write_perf_report(run_dir: Path) -> Path:
    path = Path(run_dir) / "perf.md"
    path.write_text(perf_markdown(run_dir))
    return path
