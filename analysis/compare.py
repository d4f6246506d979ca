"""`pushpull compare RUN_A RUN_B`: match the cells of two runs and give the ratio B/A of each
figure, marking a difference as noise when it is inside the run-to-run band.

The band for a figure is how far repeats of the same cell spread (max/min - 1). When either run
repeated its cells (`--repeat N`), the band comes from those repeats; otherwise from NOISE_BAND,
measured on this project's 2-core machine (see docs/noise.md for how, and re-measure it with
`make noise` on yours).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from analysis.results import Run, load_run, point_key  # noqa: E402
from analysis.style import plain_number, save_figure  # noqa: E402
from pushpull.core.intervals import overlap  # noqa: E402

FIGURES = [
    ("p50", "p50 latency", lambda c: c["latency_us"]["p50"]),
    ("p99", "p99 latency", lambda c: c["latency_us"]["p99"]),
    ("server_cpu", "server CPU / delivery", lambda c: c["server_cpu_us_per_delivery"]),
    ("bytes", "bytes / delivery", lambda c: c["bytes_per_delivery"]),
    ("requests", "requests / delivery", lambda c: c["requests_per_delivery"]),
]
# Relative run-to-run spread (max/min - 1) of each figure over 3 repeats of the same cell,
# the 90th percentile over the cells of `make noise` on the 2-core reference machine (docs/noise.md).
# Measured 2026-11-24 (run 20261124T031957Z): p50 0.33, p99 1.64, server CPU 0.50, bytes 0.001,
# requests 0.0; floored at 1% for the byte and request counts.
NOISE_BAND = {"p50": 0.35, "p99": 1.65, "server_cpu": 0.50, "bytes": 0.01, "requests": 0.01}


def spread(values: list[float]) -> float | None:
    values = [v for v in values if v]
    if len(values) < 2:
        return None
    return max(values) / min(values) - 1


def measured_bands(*runs: Run) -> dict[str, dict[str, float]]:
    """Per cell key and figure, the spread of that cell's repeats (from whichever run has them)."""
    bands: dict[str, dict[str, float]] = defaultdict(dict)
    for run in runs:
        groups: dict[str, list[dict]] = defaultdict(list)
        for cell in run.cells:
            groups[point_key(cell)].append(cell)
        for key, group in groups.items():
            for name, _title, get in FIGURES:
                band = spread([get(c) for c in group])
                if band is not None:
                    bands[key][name] = max(band, bands[key].get(name, 0.0))
    return bands


def noise_summary(run: Run) -> dict[str, float]:
    """The 90th percentile over cells of each figure's spread among repeats: what NOISE_BAND holds."""
    per_figure: dict[str, list[float]] = defaultdict(list)
    for band in measured_bands(run).values():
        for name, value in band.items():
            per_figure[name].append(value)
    return {
        name: sorted(v)[min(len(v) - 1, int(0.9 * len(v)))] for name, v in per_figure.items() if v
    }


def compare_rows(a: Run, b: Run) -> list[dict]:
    bands = measured_bands(a, b)
    a_points = {point_key(c): c for c in a.points()}
    rows = []
    for cell in b.points():
        key = point_key(cell)
        if key not in a_points:
            continue
        row = {"cell": key, "figures": {}}
        for name, title, get in FIGURES:
            before, after = get(a_points[key]), get(cell)
            if not before or not after:
                continue
            band = bands.get(key, {}).get(name, NOISE_BAND[name])
            ratio = after / before
            # the band is a max/min spread, so it holds ratios between 1/(1+band) and 1+band
            inside = 1 / (1 + band) <= ratio <= 1 + band
            # a latency difference is real only when the intervals over events agree too
            overlapping = None
            if name in ("p50", "p99"):
                overlapping = overlap(
                    (a_points[key].get("latency_ci_us") or {}).get(name),
                    (cell.get("latency_ci_us") or {}).get(name),
                )
            row["figures"][name] = {
                "title": title, "a": before, "b": after, "ratio": ratio, "band": band,
                "noise": inside or bool(overlapping), "intervals_overlap": overlapping,
                "band_source": "repeats" if name in bands.get(key, {}) else "default",
            }  # fmt: skip
        rows.append(row)
    return rows


def compare_markdown(a: Run, b: Run, rows: list[dict]) -> str:
    lines = [
        f"# pushpull compare: {b.path.name} (B) against {a.path.name} (A)",
        "",
        "Ratio = B / A for cells measured in both runs. *within noise* when the difference is inside "
        "the run-to-run band (from the runs' own repeats where they have them, otherwise the default "
        "band of docs/noise.md) or, for p50 and p99, when the two cells' 95% intervals over events "
        "overlap (docs/intervals.md): a difference is called real only when both say so.",
        "",
        "| cell | " + " | ".join(title for _, title, _ in FIGURES) + " |",
        "|---|" + "---|" * len(FIGURES),
    ]
    for row in rows:
        cells = []
        for name, _title, _get in FIGURES:
            f = row["figures"].get(name)
            if f is None:
                cells.append("-")
            else:
                verdict = (
                    "within noise" if f["noise"] else ("higher" if f["ratio"] > 1 else "lower")
                )
                if f.get("intervals_overlap") and not (
                    1 / (1 + f["band"]) <= f["ratio"] <= 1 + f["band"]
                ):
                    verdict += ", intervals overlap"
                cells.append(f"{f['ratio']:.2f}x ({verdict}, band ±{100 * f['band']:.0f}%)")
        lines.append(f"| {row['cell']} | " + " | ".join(cells) + " |")
    unmatched = sorted({point_key(c) for c in a.cells} ^ {point_key(c) for c in b.cells})
    if unmatched:
        lines += ["", "Cells in only one of the runs: " + ", ".join(unmatched)]
    return "\n".join(lines) + "\n"


def compare_chart(a: Run, b: Run, rows: list[dict], path: Path) -> Path:
    names = [name for name, _t, _g in FIGURES[:3]]
    fig, axes = plt.subplots(
        1, len(names), figsize=(5.2 * len(names), 0.45 * max(len(rows), 3) + 1.8), sharey=True
    )
    labels = [row["cell"] for row in rows]
    for ax, name in zip(axes, names):
        for i, row in enumerate(rows):
            f = row["figures"].get(name)
            if f is None:
                continue
            ax.axhspan(i - 0.4, i + 0.4, xmin=0, xmax=1, color="#eeeeee", zorder=0)
            ax.fill_betweenx(
                [i - 0.35, i + 0.35], 1 / (1 + f["band"]), 1 + f["band"], color="#cccccc", zorder=1
            )
            ax.plot([f["ratio"]], [i], "o", color="#555555" if f["noise"] else "#D55E00", zorder=2)
        ax.axvline(1, color="black", linewidth=0.8)
        ax.set_xscale("log")
        low, high = ax.get_xlim()
        ax.set_xticks([t for t in (0.25, 0.5, 0.67, 1, 1.5, 2, 4) if low <= t <= high])
        ax.xaxis.set_major_formatter(FuncFormatter(plain_number))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{dict((n, t) for n, t, _ in FIGURES)[name]}: B / A (log scale)")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(
        f"{b.path.name} (B) vs {a.path.name} (A): grey band = run-to-run noise, orange = outside it",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def write_comparison(run_a: Path, run_b: Path, out: Path | None = None) -> tuple[Path, Path, str]:
    a, b = load_run(run_a), load_run(run_b)
    rows = compare_rows(a, b)
    out = out or a.path.parent / f"compare-{a.path.name}-vs-{b.path.name}"
    out.mkdir(parents=True, exist_ok=True)
    text = compare_markdown(a, b, rows)
    (out / "compare.md").write_text(text)
    chart = compare_chart(a, b, rows, out / "compare.png") if rows else None
    return out / "compare.md", chart, text
