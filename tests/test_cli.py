"""Bad input: one clear line naming the flag, a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pushpull.core import transports
from tests.conftest import ROOT, pushpull, running_server


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str, status: int = 2):
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """The CLI's main() in this process, for bad input that stops before anything runs (a
    subprocess per case cost 0.25 s of start-up; test_the_cli_process_itself_gives_one_line
    keeps the real command's path covered)."""
    from pushpull.cli import main

    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code if isinstance(exc.code, int) else 2
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


def test_the_cli_process_itself_gives_one_line(tmp_path):
    for args, needles in (
        (["--clients", "0"], ["--clients", "from 1"]),
        (["--bogus"], ["--bogus"]),
    ):
        result = pushpull("bench", "--out", str(tmp_path), *args, timeout=60)
        assert_one_line_error(result, *needles)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--clients", "0"], ["--clients", "0", "from 1"]),
        (["--clients", "abc"], ["--clients", "'abc'", "whole number"]),
        (["--clients", "10,-5"], ["--clients", "-5"]),
        (["--clients", ""], ["--clients", "empty"]),
        (["--transports", "foo"], ["--transports", "'foo'", ", ".join(transports.NAMES)]),
        (["--duration", "-1"], ["--duration", "-1", "above 0"]),
        (["--duration", "soon"], ["--duration", "'soon'"]),
        (["--rate", "0"], ["--rate", "above 0"]),
        (["--poll-interval", "x"], ["--poll-interval", "'x'"]),
        (["--port", "70000"], ["--port", "70000", "0-65535"]),
        (["--spawn-rate", "0"], ["--spawn-rate"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
        (["--scenario", "gossip"], ["--scenario", "'gossip'", "broadcast, chat"]),
        (["--send-rate", "x"], ["--send-rate", "'x'"]),
        (["--payload-bytes", "-1"], ["--payload-bytes", "-1", "from 0 to 60000"]),
        (["--client", "ws4py"], ["--client", "'ws4py'", ", ".join(transports.CLIENT_KINDS)]),
        (["--transports", "longpoll", "--client", "python-socketio"], ["--client", "none of them"]),
        (["--loadgen-procs", "0"], ["--loadgen-procs", "0"]),
        (["--repeat", "many"], ["--repeat", "'many'"]),
        (["--server-procs", "0"], ["--server-procs", "0", "from 1 to 16"]),
        (["--server-procs", "2"], ["--server-procs", "--message-queue redis://"]),
        (["--message-queue", "http://x"], ["--message-queue", "'http://x'", "not a Redis URL"]),
        (
            ["--message-queue", "redis://u:secret@127.0.0.1:1/0"],
            ["--message-queue", "no Redis answers", "redis-server"],
        ),
        (["--loadgen-workers", "-1"], ["--loadgen-workers", "0 to 256"]),
        (["--loadgen-workers", "2", "--loadgen-procs", "2"], ["--loadgen-workers", "not both"]),
        (["--master-port", "0"], ["--master-port", "1-65535"]),
        (["--target", "ftp://x"], ["--target", "'ftp://x'", "http://HOST:PORT"]),
        (["--churn-every", "soon"], ["--churn-every", "'soon'", "mean seconds"]),
        (["--drain", "-1"], ["--drain", "-1", "above 0"]),
        (["--drain", "later"], ["--drain", "'later'"]),
        (
            ["--transports", "shortpoll", "--poll-interval", "1", "--drain", "0.5"],
            ["--drain", "shorter than the short-poll interval 1 s", "at least 1"],
        ),
        (["--grace", "-2"], ["--grace", "-2"]),
        (["--idle", "-1"], ["--idle", "-1"]),
        (["--churn-every", "0.01"], ["--churn-every", "too often", "0.1 to 3600"]),
        (["--churn-every", "-5"], ["--churn-every", "-5", "at least 0"]),
        (["--churn-downtime", "x"], ["--churn-downtime", "'x'"]),
        (["--resume", "maybe"], ["--resume", "'maybe'", "off or on"]),
        (
            ["--churn-every", "5", "--transports", "socketio", "--client", "python-socketio"],
            ["--churn-every", "lean clients", "python-socketio"],
        ),
        (
            [
                "--target",
                "http://127.0.0.1:5001",
                "--server-procs",
                "2",
                "--message-queue",
                "redis://127.0.0.1:6379/0",
            ],
            ["--target", "--server-procs"],
        ),
    ],
)
def test_bench_rejects_bad_input(tmp_path, capsys, args, needles):
    result = in_process(capsys, "bench", "--out", str(tmp_path), *args)
    assert_one_line_error(result, *needles)
    assert not any(tmp_path.iterdir()), "nothing is run or written for bad input"


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--start", "500", "--max", "100"], ["--max", "below --start"]),
        (["--slo-p99", "0"], ["--slo-p99", "above 0"]),
        (["--step", "two"], ["--step", "'two'"]),
        (["--transports", "carrier-pigeon"], ["--transports", "'carrier-pigeon'"]),
        (["--drain", "0"], ["--drain", "above 0"]),
        (["--grace", "soon"], ["--grace", "'soon'"]),
    ],
)
def test_capacity_rejects_bad_input(tmp_path, capsys, args, needles):
    assert_one_line_error(in_process(capsys, "capacity", "--out", str(tmp_path), *args), *needles)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--before", "-1"], ["--before", "-1", "above 0"]),
        (["--after", "forever"], ["--after", "'forever'"]),
        (["--transports", "telegraph"], ["--transports", "'telegraph'"]),
        (["--resume", "both"], ["--resume", "'both'", "off or on"]),
        (["--drain", "x"], ["--drain", "'x'"]),
    ],
)
def test_storm_rejects_bad_input(tmp_path, capsys, args, needles):
    assert_one_line_error(in_process(capsys, "storm", "--out", str(tmp_path), *args), *needles)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--trials", "many"], ["--trials", "'many'", "whole number"]),
        (["--trials", "0"], ["--trials", "0"]),
        (["--duration", "1"], ["--duration", "1", "above 2"]),
    ],
)
def test_validate_rejects_bad_input(tmp_path, args, needles):
    assert_one_line_error(pushpull("validate", "--out", str(tmp_path), *args, timeout=60), *needles)
    assert not any(tmp_path.iterdir())


def test_out_must_be_a_folder(tmp_path):
    file = tmp_path / "a-file"
    file.write_text("")
    assert_one_line_error(pushpull("bench", "--out", str(file)), "--out", "not a folder")


def test_plot_needs_a_run_folder(tmp_path):
    assert_one_line_error(pushpull("plot", str(tmp_path / "nope")), "not a run folder", status=1)
    assert_one_line_error(pushpull("plot", str(tmp_path)), "no summary.json", status=1)


def test_port_in_use_is_one_line(tmp_path):
    with running_server("servers.longpoll") as (url, _pid):
        port = url.rsplit(":", 1)[1]
        result = pushpull(
            "bench", "--transports", "longpoll", "--clients", "1", "--duration", "1",
            "--port", port, "--out", str(tmp_path), "--no-plot", timeout=120,
        )  # fmt: skip
    assert_one_line_error(
        result, "failed to start", "address already in use", f"--port {port}", status=1
    )


def test_server_that_cannot_bind_is_one_line(tmp_path):
    result = pushpull(
        "bench", "--transports", "socketio", "--clients", "1", "--duration", "1",
        "--host", "192.0.2.1", "--out", str(tmp_path), "--no-plot", timeout=120,
    )  # fmt: skip
    assert_one_line_error(result, "servers.push", "failed to start", "192.0.2.1", status=1)


def test_server_cli_errors_are_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for module in ("servers.push", "servers.longpoll"):
            result = subprocess.run(
                [sys.executable, "-m", module, "--port", port],
                cwd=ROOT, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert_one_line_error(result, module, "address already in use")
    result = subprocess.run(
        [sys.executable, "-m", "servers.push", "--rate", "fast"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert_one_line_error(result, "--rate", "'fast'")
    result = subprocess.run(
        [sys.executable, "-m", "servers.websocket", "--clock-offset-ms", "a day"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert_one_line_error(result, "--clock-offset-ms", "'a day'", "milliseconds")


def test_verify_reports_a_server_that_does_not_speak_the_protocol(tmp_path):
    """A plain static file server is not a pushpull server: verify lists problems."""
    from pushpull.harness.verify import verify

    (tmp_path / "healthz").write_text('{"status": "ok"}')
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
        port = line.split(" port ")[1].split()[0]
        problems = verify(transports.get("longpoll"), f"http://127.0.0.1:{port}", process.pid)
    finally:
        process.terminate()
        process.wait()
    assert problems and any("/healthz" in p or "HTTP" in p or "Error" in p for p in problems)


def test_make_rejects_a_bad_variable_value():
    venv = Path(sys.executable).parent.parent
    result = subprocess.run(
        ["make", "--no-print-directory", "bench", "CLIENTS=ten", f"VENV={venv}", "STAMP="],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "pushpull bench: error: --clients: 'ten' is not a whole number" in result.stderr


def test_an_unknown_transport_is_rejected_everywhere(tmp_path):
    """Every place a transport name can be given refuses an unknown one, loudly."""
    for command in ("bench", "capacity", "perf"):
        result = pushpull(command, "--transports", "carrier-pigeon", "--out", str(tmp_path))
        assert_one_line_error(result, "--transports", "'carrier-pigeon'", "allowed:")
    locust = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
         "--headless", "--transport", "carrier-pigeon", "--host", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert locust.returncode != 0 and "carrier-pigeon" in locust.stderr
    assert "invalid choice" in locust.stderr
    with pytest.raises(transports.UnknownTransport, match="allowed: "):
        transports.get("carrier-pigeon")
    # a run folder naming an unknown transport: the report says so in one line
    run = tmp_path / "run"
    run.mkdir()
    cell = {"transport": "carrier-pigeon", "name": "carrier-pigeon-c1-r2"}
    (run / "summary.json").write_text(json.dumps({"schema_version": 2, "cells": [cell]}))
    assert_one_line_error(
        pushpull("report", str(run)), "unknown transport 'carrier-pigeon'", status=1
    )


def test_transports_lists_the_registry_and_the_readme_carries_it():
    result = pushpull("transports")
    assert result.returncode == 0
    rows = result.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == list(transports.NAMES)
    readme = (ROOT / "README.md").read_text()
    assert transports.markdown_table() in readme, "README's transport table = the registry's"


def test_every_commands_help_prints():
    """`pushpull --help` and every command's `--help` print (a help text with a bare `%` once
    made `pushpull bench --help` a traceback): each option's text expands, defaults included."""
    import argparse

    from pushpull.cli import build_parser

    parser = build_parser()
    assert "usage: pushpull" in parser.format_help()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(commands.choices) >= 10
    for name, command in commands.choices.items():
        text = command.format_help()
        assert f"usage: pushpull {name}" in text, name
        assert "--help" in text, name
