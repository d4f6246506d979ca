"""A short Markdown table of a run's cells (results/<run>/summary.md)."""

from __future__ import annotations

from pathlib import Path

from analysis import churn, storm, style
from analysis.findings import log_error_notes
from analysis.results import cell_variants
from analysis.style import ms_text as ms
from analysis.style import rank, write_text_inside


def num(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def with_interval(cell: dict, stat: str) -> str:
    """'12.3 [11.8, 13.0]': the figure and its 95% interval over events, in ms."""
    ci = (cell.get("latency_ci_us") or {}).get(stat)
    text = ms(cell["latency_us"][stat])
    return f"{text} [{ms(ci[0])}, {ms(ci[1])}]" if ci else text


def cell_rows(cells: list[dict]) -> list[list[str]]:
    ordered = sorted(
        cells,
        key=lambda c: (
            c["rate"],
            c["clients"],
            rank(c["transport"]),
            c["poll_interval"] or 0,
        ),
    )
    rows = []
    for c in ordered:
        lat = c["latency_us"]
        variants = cell_variants(c)
        transport = c["transport"] + (f" ({', '.join(variants)})" if variants else "")
        rows.append(
            [
                transport,
                str(c["clients"]),
                f"{c['rate']:g}",
                with_interval(c, "p50"),
                ms(lat["p90"]),
                with_interval(c, "p99"),
                ms(lat["p999"]),
                ms(lat["max"]),
                f"{c['received']}/{c['expected']}",
                str(c["lost"]),
                str(c["duplicates"]),
                num(c["requests_per_delivery"]),
                num(c["bytes_per_delivery"], 0),
                num(c["server_cpu_us_per_delivery"], 0),
                num(c["loadgen_cpu_percent"], 0),
            ]
        )
    return rows


HEADER = [
    "transport", "clients", "rate/s", "p50 ms [95% interval]", "p90 ms",
    "p99 ms [95% interval]", "p99.9 ms", "max ms",
    "received/expected", "lost", "dup", "req/delivery", "bytes/delivery",
    "server CPU us/delivery", "loadgen CPU %",
]  # fmt: skip


def markdown_table(cells: list[dict]) -> str:
    return style.markdown_table(HEADER, cell_rows(cells))


def write_summary_table(run, path: Path) -> Path:
    manifest = run.manifest
    status = (
        "complete"
        if run.summary.get("complete")
        else "INCOMPLETE (interrupted or failed): partial results"
    )
    head = [
        f"# pushpull run {run.summary.get('run', run.path.name)}",
        "",
        f"{status}; {manifest.get('cores', '?')} cores ({manifest.get('cpu_model', '?')}), "
        f"Python {manifest.get('python', '?')}, command: `{' '.join(manifest.get('argv', []))}`",
        "",
        "Delivery latency = each client's receive time - the server's publish time, steady-state "
        "window only (warm-up excluded).",
        "",
    ]
    failed = [
        f"- failed: {f.get('name')}: {f.get('reason')}" for f in run.summary.get("failed") or []
    ]
    tail = "\n" + "\n".join(failed) + "\n" if failed else ""
    if churn.rows(run.cells):
        tail += "\n## Clients that come and go\n\n" + churn.markdown_table(run.cells)
    if storm.rows(run.cells):
        tail += "\n## Reconnect storm\n\n" + storm.markdown_table(run.cells)
    if logs := log_error_notes(run.cells):
        tail += "\n## Server and Locust logs\n\n" + "".join(f"- {line}\n" for line in logs)
    return write_text_inside(
        path.parent, path.name, "\n".join(head) + markdown_table(run.cells) + tail
    )
