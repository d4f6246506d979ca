"""Reading a process's log for what went wrong (pushpull/harness/logscan.py): every traceback once,
named by its last line, and every error line; nothing for the lines a healthy run writes."""

from __future__ import annotations

from pushpull.harness.logscan import scan_log, scan_logs, scan_text

HEALTHY = """{"listening": "http://127.0.0.1:40001", "pid": 4242, "nofile": 20000}
[2026-12-01 21:25:41,767] vm/WARNING/locust.runners: Your selected spawn rate is very high (>100)
[2026-12-01 21:25:44,886] vm/INFO/pushpull: pushpull socketio: 60 deliveries in the window, p50 0.8 ms
'Session is disconnected' sFwVGf1ITG7tjPC6AAAC (further occurrences of this error will be logged with level INFO)
Type     Name            # reqs      # fails |    Avg     Min     Max    Med |   req/s  failures/s
DELIVER  socketio            90     0(0.00%) |      0       0       2      1 |   29.13        0.00
"""

PUBLISHER_DIED = """Traceback (most recent call last):
  File "src/gevent/greenlet.py", line 912, in gevent._gevent_cgreenlet.Greenlet.run
  File "/work/main/servers/events.py", line 153, in run_publisher
    log.publish("tick", data, t_sched, data_json)
wsproto.utilities.LocalProtocolError: Event TextMessage(data='{"seq":940}') cannot be sent in state ConnectionState.CLOSED.
2026-12-01T21:25:52Z <Greenlet at 0x7f210fd55a80: run_publisher(<servers.events.EventLog object>, 10.0, '', None)> failed with LocalProtocolError
"""

CHAINED = """Traceback (most recent call last):
  File "a.py", line 1, in f
KeyError: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "a.py", line 3, in f
ValueError: no x
"""


def test_a_healthy_log_holds_no_error():
    assert scan_text(HEALTHY) == {"count": 0, "first": []}


def test_a_dead_publisher_counts_once_named_by_its_exception():
    found = scan_text(HEALTHY + PUBLISHER_DIED + HEALTHY)
    assert found["count"] == 1, found
    assert found["first"][0].startswith("wsproto.utilities.LocalProtocolError: Event TextMessage")


def test_a_chained_traceback_is_one_named_by_its_last_exception():
    assert scan_text(CHAINED) == {"count": 1, "first": ["ValueError: no x"]}


def test_error_lines_of_locust_python_logging_and_programs_count():
    text = (
        "[2026-12-01 21:40:01,123] vm/ERROR/locust.runners: pushpull: Locust workers left\n"
        "CRITICAL:root:the disk is full\n"
        "servers.push: error: --port 5001: address already in use\n"
        "[2026-12-01 21:40:01,123] vm/INFO/locust.main: an error in words is not an error line\n"
    )
    found = scan_text(text)
    assert found["count"] == 3 and "Locust workers left" in found["first"][0], found


def test_only_the_first_lines_are_kept_and_a_missing_log_counts_nothing(tmp_path):
    found = scan_text(PUBLISHER_DIED * 8)
    assert found["count"] == 8 and len(found["first"]) == 5
    (tmp_path / "server.log").write_text(PUBLISHER_DIED)
    both = scan_logs({"server.log": tmp_path / "server.log", "gone.log": tmp_path / "gone.log"})
    assert both["count"] == 1 and both["processes"]["gone.log"] == {"count": 0, "first": []}
    assert scan_log(tmp_path / "server.log")["count"] == 1
