"""`pushpull report RUN_DIR`: one self-contained report.html (charts embedded, nothing fetched)
with the question each chart answers, findings written from the numbers, a row per cell and
the run's manifest. Everything in it comes from that run folder."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from analysis import churn, storm
from analysis.capacity import load_capacity
from analysis.findings import LOG_ERRORS, findings
from analysis.plot import plot_run
from analysis.results import Run, cell_variants, load_run
from analysis.style import color, label, ms_text, transport_order, write_text_inside
from pushpull.core import transports

QUESTIONS = {
    "latency_vs_clients.png": "How long does each client wait for an event, per transport, as the number of clients grows?",
    "latency_distribution.png": "How is each transport's latency spread out: how bad is the tail at each client count?",
    "timeline.png": "What does one client see over a few seconds: when was each event published and when did it arrive?",
    "cost_per_delivery.png": "What does each delivered message cost: bytes on the wire, server CPU, requests, memory per client?",
    "latency_vs_rate.png": "Where does long-polling fall behind push as events arrive faster?",
    "polling_vs_interval.png": "How many requests does short polling spend, and waste, per delivered event?",
    "capacity.png": "How many clients can each transport hold with p99 under the latency limit?",
    "scaleout.png": "What do more server processes behind a Redis queue cost and deliver, per transport?",
    "storm.png": "When every connection drops at once, how fast is each transport's crowd back and caught up?",
    "churn.png": "When clients leave and come back, what does each transport lose, and how fast is a client caught up?",
}
COLUMNS = [
    ("transport", "transport"), ("clients", "clients"), ("rate", "rate /s"), ("p50", "p50 ms"),
    ("p90", "p90 ms"), ("p99", "p99 ms"), ("p999", "p99.9 ms"), ("lost", "lost / expected"),
    ("duplicates", "dup"), ("requests_per_delivery", "requests / delivery"),
    ("bytes_per_delivery", "bytes / delivery"), ("server_cpu_us_per_delivery", "server CPU us / delivery"),
    ("loadgen_cpu_percent", "Locust CPU %"), ("flags", "flags"),
]  # fmt: skip
STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1180px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.lead { color: #555; } figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-weight: 600; margin-bottom: 0.4em; } table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; } th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; } .swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em; }
.flag { color: #b00; } .ci { color: #666; font-size: 0.85em; } details { margin: 1em 0; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 12px; }
li { margin: 0.35em 0; }
"""


def embedded_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def cell_value(cell: dict, key: str) -> str:
    lat = cell["latency_us"]
    if key in ("p50", "p99"):  # with the 95% interval over events (docs/intervals.md)
        ci = (cell.get("latency_ci_us") or {}).get(key)
        interval = f' <span class="ci">[{ms_text(ci[0])}, {ms_text(ci[1])}]</span>' if ci else ""
        return ms_text(lat[key]) + interval
    if key in ("p90", "p999"):
        return ms_text(lat[key])
    if key == "transport":
        extra = cell_variants(cell)
        swatch = f'<span class="swatch" style="background:{color(cell["transport"])}"></span>'
        return swatch + html.escape(
            label(cell["transport"]) + (f" ({', '.join(extra)})" if extra else "")
        )
    if key == "rate":
        return html.escape(f"{cell['rate']:g}")
    if key == "lost":
        return html.escape(f"{cell['lost']} / {cell['expected']}")
    if key == "flags":
        flags = []
        if cell.get("client_bound"):
            flags.append("client-bound: " + "; ".join(cell["client_bound_reasons"]))
        if cell["lost"] or cell["duplicates"] or cell["errors"]:
            flags.append(f"{cell['errors']} errors" if cell["errors"] else "incomplete")
        flags += cell.get("contention") or []
        for whose, key in LOG_ERRORS:
            if (cell.get(key) or {}).get("count"):
                flags.append(f"{cell[key]['count']} {whose} log error(s)")
        if cell.get("unavailable"):
            flags.append(
                "target lacks "
                + ", ".join(
                    sorted(
                        {
                            r.split(" (")[0].removeprefix("the target has no ")
                            for r in cell["unavailable"].values()
                        }
                    )
                )
            )
        return '<span class="flag">' + html.escape(", ".join(flags)) + "</span>" if flags else ""
    value = cell.get(key)
    if value is None:
        return "-"
    if key == "requests_per_delivery" and isinstance(value, float):
        return f"{value:.2f}"
    return f"{value:.0f}" if isinstance(value, float) else html.escape(str(value))


def cell_table(cells: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in COLUMNS)
    rows = "".join(
        '<tr class="cell">'
        + "".join(f"<td>{cell_value(c, key)}</td>" for key, _ in COLUMNS)
        + "</tr>"
        for c in cells
    )
    return f'<table id="cells"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def text_table(name: str, header: list[str], rows: list[list[str]]) -> str:
    """A table of plain-text cells (escaped), id and row class `name`."""
    head = "".join(f"<th>{html.escape(title)}</th>" for title in header)
    body = "".join(
        f'<tr class="{name}">' + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f'<table id="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def churn_table(cells: list[dict]) -> str:
    rows = churn.rows(cells)
    if not rows:
        return ""
    return (
        "<h2>Clients that come and go</h2><p>Gap: the events published while a client was "
        "away (from its last received event to the server's newest at its new welcome). "
        "Catch-up: from starting to reconnect until every one of them arrived.</p>"
        + text_table("churn", churn.HEADER, rows)
    )


def backoff_words(cells: list[dict]) -> str:
    names = transport_order(c["transport"] for c in cells if c.get("storm"))
    return "; ".join(
        f"{name} as {transports.get(name).backoff}, "
        f"{transports.BACKOFFS[transports.get(name).backoff]}"
        for name in names
    )


def storm_table(cells: list[dict]) -> str:
    rows = storm.rows(cells)
    if not rows:
        return ""
    return (
        "<h2>Reconnect storm</h2><p>Every client connection dropped at once by the server; "
        "times since the drop until the share of dropped clients was welcomed again (back) and "
        "had every event published while away (caught up). Clients wait as their real libraries "
        "do: "
        + html.escape(backoff_words(cells))
        + ".</p>"
        + text_table("storm", storm.HEADER, rows)
    )


def manifest_section(manifest: dict) -> str:
    floor = manifest.get("floor") or {}
    placement = manifest.get("placement") or {}
    facts = [
        ("host", manifest.get("host")),
        ("CPU", f"{manifest.get('cpu_model')} ({manifest.get('cores')} cores)"),
        ("memory", f"{(manifest.get('memory_bytes') or 0) / 2**30:.1f} GiB"),
        ("Python", manifest.get("python")),
        (
            "git",
            f"{(manifest.get('git') or {}).get('sha')}{' (uncommitted changes)' if (manifest.get('git') or {}).get('dirty') else ''}",
        ),
        ("command", " ".join(manifest.get("argv", []))),
        (
            "placement",
            f"server on CPUs {placement.get('server')}, Locust on {placement.get('loadgen')}"
            if placement.get("pinned")
            else "not pinned",
        ),
        (
            "floor",
            f"websocket echo round trip p50 {floor.get('websocket_echo_rtt_us', {}).get('p50')} us (one way ~{floor.get('one_way_us')} us)"
            if floor
            else "not measured",
        ),
    ]
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in facts
    )
    versions = html.escape(
        json.dumps(
            {"packages": manifest.get("packages"), "arguments": manifest.get("arguments")}, indent=2
        )
    )
    return f"<table>{rows}</table><details><summary>package versions and full arguments</summary><pre>{versions}</pre></details>"


def build_report(run: Run, charts: list[Path]) -> str:
    cells = run.cells
    failed = run.summary.get("failed") or []
    status = (
        ("complete" if not failed else f"complete, but {len(failed)} cell(s) failed")
        if run.summary.get("complete")
        else "incomplete (interrupted or failed): partial results"
    )
    failures = (
        "<h2>Failed cells</h2><ul id='failed'>"
        + "".join(
            f"<li><b>{html.escape(str(f.get('name')))}</b>: {html.escape(str(f.get('reason')))}</li>"
            for f in failed
        )
        + "</ul>"
        if failed
        else ""
    )
    notes = "".join(
        f"<li>{html.escape(n)}</li>" for n in findings(run.points(), load_capacity(run))
    )
    figures = "".join(
        f"<figure><figcaption>{html.escape(QUESTIONS.get(p.name, p.stem))}</figcaption>"
        f'<img src="{embedded_png(p)}" alt="{html.escape(p.stem)}"></figure>'
        for p in sorted(
            charts, key=lambda p: list(QUESTIONS).index(p.name) if p.name in QUESTIONS else 99
        )
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pushpull report {html.escape(run.path.name)}</title>
<style>{STYLE}</style></head><body>
<h1>pushpull: push vs polling on Flask</h1>
<p class="lead">Run {html.escape(run.path.name)}, {html.escape(status)}: {len(cells)} cell(s), {html.escape(run.title_suffix())}.
Delivery latency is each client's receive time minus the server's publish time (for chat: the sender's send time),
measured per recipient in the steady-state window; warm-up is excluded.</p>
<h2>Findings</h2><ul id="findings">{notes}</ul>{failures}
<h2>Charts</h2>{figures}
<h2>Every cell</h2>{cell_table(cells)}{churn_table(cells)}{storm_table(cells)}
<h2>Machine and run</h2>{manifest_section(run.manifest)}
</body></html>
"""


def write_report(run_dir: Path) -> Path:
    """Draw the run's charts from its data, then write report.html beside them."""
    charts = plot_run(run_dir)
    run = load_run(run_dir)
    return write_text_inside(run.path, "report.html", build_report(run, charts))
