"""Locust swarms for pushpull: one User class per transport (named by the registry,
pushpull/core/transports.py, and defined in the transport's own module), each recording per-recipient
delivery latency (receive time - publish time) of every event the server publishes.

Run by `pushpull bench`, or on its own with Locust's web UI:

    locust -f loadtests/locustfile.py --host http://127.0.0.1:5001 --transport socketio

Every delivered event is counted in Locust's request stats (type DELIVER, response time = the
delivery latency in ms, added in bulk: see hooks.BulkStats) so Locust's UI, CSV and HTML reports
show it. Each event is also recorded in this process's own steady-state HdrHistogram in integer
microseconds (see recorder.py), which is what pushpull reports. The window starts `--grace`
seconds after spawning completes and lasts `--measure` seconds (0: until the test stops); events
published before it are recorded separately as warm-up. With `--pushpull-out DIR` each process
writes its measurements to DIR when the test stops. The hooks live in hooks.py.
"""

from __future__ import annotations

from loadtests import hooks  # noqa: F401 - registers pushpull's options and event listeners
from pushpull.core import transports

# Locust finds User classes in this module's namespace: every client of every transport.
for _transport in transports.REGISTRY:
    for _variant in _transport.clients.values():
        _cls = transports.resolve(_variant.path)
        globals()[_cls.__name__] = _cls
del _transport, _variant, _cls  # Locust would count these names as more user classes
