"""The report people read: self-contained report.html, run comparison with a noise band, and a
real browser (headless Chromium) rendering the report."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from analysis.report import COLUMNS
from analysis.results import load_run
from pushpull.core import transports
from pushpull.harness.proxy import Proxy
from tests.cdp import Chromium
from tests.conftest import chart_size, needs, pushpull, running_server


@pytest.fixture(scope="module")
def tiny_run(reference_run) -> Path:
    """The session's reference run (tests/conftest.py): every transport at 2 and 4 clients."""
    assert "report in" in reference_run.result.stdout, "bench ends by printing the report's path"
    return reference_run.path


def test_report_is_self_contained_and_from_this_run(tiny_run):
    html = (tiny_run / "report.html").read_text()
    cells = json.loads((tiny_run / "summary.json").read_text())["cells"]
    assert len(re.findall(r'<tr class="cell">', html)) == len(cells) == 2 * len(transports.NAMES)
    assert not re.search(r'(src|href)="(https?:)?//', html), "nothing fetched from the network"
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) >= 4 and all(src.startswith("data:image/png;base64,") for src in images)
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    findings = re.findall(r"<li>(.*?)</li>", html.split('id="findings"')[1].split("</ul>")[0])
    points = load_run(tiny_run).points()  # findings read repeats as one point each
    delivered = f"{sum(c['received'] for c in points):,} deliveries"
    assert any(delivered in f for f in findings), "findings are written from this run's numbers"
    # the Socket.IO row's p99 cell holds this run's p99 and its interval (not a number that
    # the page's CSS or another row might happen to contain)
    socketio = next(c for c in cells if c["transport"] == "socketio")
    rows = re.findall(r'<tr class="cell">(.*?)</tr>', html)
    row = rows[cells.index(socketio)]  # a row per cell, in the summary's order
    assert "Socket.IO (websocket push)" in row
    p99_cell = re.findall(r"<td>(.*?)</td>", row)[[k for k, _ in COLUMNS].index("p99")]
    p99 = f"{socketio['latency_us']['p99'] / 1000:.1f}"
    interval = socketio["latency_ci_us"]["p99"]
    assert socketio["latency_ci_us"]["events"] >= 5, "4 events/s for 2 s: an interval"
    low, high = interval
    assert p99_cell.startswith(f"{p99} <span"), p99_cell
    assert f"[{low / 1000:.1f}, {high / 1000:.1f}]" in p99_cell, p99_cell
    assert (
        "2 cores" in html
        or f"{json.loads((tiny_run / 'manifest.json').read_text())['cores']} cores" in html
    )
    for question in ("How long does each client wait", "What does each delivered message cost"):
        assert question in html


def test_compare_of_a_run_with_itself_is_all_noise(tiny_run, tmp_path):
    result = pushpull("compare", str(tiny_run), str(tiny_run), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "compare.md").read_text()
    assert "socketio-c2-r4" in text and "longpoll-c2-r4" in text
    assert "1.00x (within noise" in text, "a run compared with itself is all noise"
    assert "higher" not in text and "lower" not in text
    chart_size(tmp_path / "compare.png")


def compare_row(text: str, cell: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.startswith(f"| {cell} |")]
    return [part.strip() for part in line.strip("|").split("|")][1:]


def test_compare_calls_a_known_added_delay_real_with_its_sign(tiny_run, tmp_path):
    """B is the reference run's plain WebSocket cell measured again through a proxy that holds
    every chunk 20 ms each way: compare must call its latency higher (B against A) and lower (A
    against B), never noise, and the cells only A has must be named as such."""
    with (
        running_server("servers.websocket", 4) as (url, _pid),
        Proxy(url, delay_s=0.020) as proxy,
    ):
        result = pushpull(
            "bench", "--target", proxy.url, "--transports", "websocket", "--clients", "2",
            "--rate", "4", "--duration", "2", "--grace", "0.5", "--drain", "0.5", "--idle", "0", "--no-plot",
            "--out", str(tmp_path / "delayed"), timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    delayed = (tmp_path / "delayed" / "latest").resolve()
    (cell,) = json.loads((delayed / "summary.json").read_text())["cells"]
    assert cell["name"] == "websocket-c2-r4" and cell["latency_us"]["p50"] >= 20_000
    for a, b, verdict in ((tiny_run, delayed, "higher"), (delayed, tiny_run, "lower")):
        out = tmp_path / f"compare-{verdict}"
        compared = pushpull("compare", str(a), str(b), "--out", str(out))
        assert compared.returncode == 0, compared.stderr
        text = (out / "compare.md").read_text()
        p50, p99 = compare_row(text, "websocket-c2-r4")[:2]
        assert f"({verdict}, band" in p50 and f"({verdict}, band" in p99, (p50, p99)
        ratio = float(p50.split("x")[0])
        assert (ratio > 10) if verdict == "higher" else (ratio < 0.1), p50
        assert "Cells in only one of the runs: " in text and "socketio-c2-r4" in text


def test_compare_needs_run_folders(tmp_path):
    result = pushpull("compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "not a run folder" in result.stderr


@needs("Chromium")
def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    with Chromium(tmp_path / "profile", 1280, 1600) as browser:
        browser.navigate((tiny_run / "report.html").as_uri())
        seen = json.loads(
            browser.evaluate(
                "JSON.stringify({images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]),"
                " rows: document.querySelectorAll('#cells tr.cell').length, findings: document.querySelectorAll('#findings li').length})"
            )
        )
        shot = browser.screenshot(tmp_path / "report.png", full_page=True)
    cells = json.loads((tiny_run / "summary.json").read_text())["cells"]
    assert seen["rows"] == len(cells), "a table row per cell"
    html = (tiny_run / "report.html").read_text()
    findings = html.split('id="findings"')[1].split("</ul>")[0].count("<li>")
    assert seen["findings"] == findings >= 1, "every finding the page holds is shown"
    assert len(seen["images"]) == html.count("<img ") >= 4
    for complete, width, height in seen["images"]:
        assert complete and width > 300 and height > 200, "every chart rendered"
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000


def test_report_escapes_the_run_folder_and_never_writes_through_a_link(tiny_run, tmp_path):
    """Values from a run folder cannot inject markup, and a link planted in the run folder is
    replaced, not followed."""
    run = tmp_path / "poisoned"
    shutil.copytree(tiny_run, run, symlinks=True)
    summary = json.loads((run / "summary.json").read_text())
    summary["cells"][0]["errors"] = "<script>alert(1)</script>"
    summary["cells"][1]["server_errors"] = {
        "count": 2,
        "processes": {"server.log": {"count": 2, "first": ["KeyError: '<b>sid</b>'", "x"]}},
    }
    summary["failed"] = [{"name": "<img src=x onerror=alert(2)>", "reason": "<b>x</b>"}]
    (run / "summary.json").write_text(json.dumps(summary))
    outside = tmp_path / "outside.html"
    outside.write_text("untouched")
    (run / "report.html").unlink()
    (run / "report.html").symlink_to(outside)
    result = pushpull("report", str(run))
    assert result.returncode == 0, result.stderr
    assert outside.read_text() == "untouched" and not (run / "report.html").is_symlink()
    page = (run / "report.html").read_text()
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page and "&lt;img src=x" in page
    # a server's traceback is flagged on its row and named in the findings and summary.md
    row = re.findall(r'<tr class="cell">(.*?)</tr>', page)[1]
    assert "2 server log error(s)" in row, row
    named = f"{summary['cells'][1]['name']}: 2 traceback(s) or error line(s) in the server log"
    assert named in page and "KeyError: &#x27;&lt;b&gt;sid" in page
    assert named in (run / "summary.md").read_text()
    shutil.rmtree(run / "charts")
    (run / "charts").symlink_to(tmp_path)
    refused = pushpull("report", str(run))
    assert refused.returncode == 1 and "only inside the run folder" in refused.stderr
    assert not list(tmp_path.glob("*.png")), "nothing was drawn outside the run folder"
