"""One description of a measurement point: what sets a cell apart beyond its transport, client
count and rate, written down once. The run-folder name, the progress label, the chart series,
the tables and the findings all use this table, on a `Cell` (pushpull/harness/config.py) or on a cell of
summary.json alike.

    name(Cell(transport=T, clients=100, rate=2, poll_interval=0.5).as_dict())  -> 'T-c100-r2-i0.5'
    words(cell) -> ['every 0.5 s', 'python-socketio client', '2 Locust processes', 'chat', ...]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pushpull.core import networks, transports


@dataclass(frozen=True)
class Variant:
    field: str
    default: object  # the value that is not shown
    tag: Callable[[Mapping], str]  # run-folder name suffix
    words: Callable[[Mapping], str]  # in labels, tables and legends
    splits_series: bool = True  # a chart draws one series per value when a run varies it
    key: Callable[[object], object] = lambda value: value  # hashable, to tell values apart


def _client_tag(cell: Mapping) -> str:
    return transports.get(cell["transport"]).clients[cell["client"]].tag or cell["client"]


def network_of(cell: Mapping) -> dict | None:
    """A cell's network profile: summary.json holds the profile, a Cell its `--network` item."""
    value = cell.get("network")
    return value if value is None or isinstance(value, dict) else networks.parse(value)


def _network_key(value: object) -> object:
    return value["name"] if isinstance(value, dict) else value


VARIANTS: tuple[Variant, ...] = (
    Variant("poll_interval", None, lambda c: f"i{c['poll_interval']:g}",
            lambda c: f"every {c['poll_interval']:g} s"),
    Variant("client", None, _client_tag, lambda c: f"{c['client']} client"),
    Variant("loadgen_procs", 1, lambda c: f"p{c['loadgen_procs']}",
            lambda c: f"{c['loadgen_procs']} Locust processes"),
    Variant("loadgen_workers", 0, lambda c: f"w{c['loadgen_workers']}",
            lambda c: f"{c['loadgen_workers']} Locust workers"),
    Variant("payload_bytes", 0, lambda c: f"b{c['payload_bytes']}",
            lambda c: f"{c['payload_bytes']} B payload"),
    Variant("scenario", "broadcast", lambda c: c["scenario"], lambda c: c["scenario"]),
    Variant("server_procs", 1, lambda c: f"s{c['server_procs']}",
            lambda c: f"{c['server_procs']} server processes"),
    Variant("message_queue", None, lambda c: "mq", lambda c: "Redis queue"),
    Variant("churn_every", 0.0, lambda c: f"ch{c['churn_every']:g}-d{c['churn_downtime']:g}",
            lambda c: f"churn every {c['churn_every']:g} s, away {c['churn_downtime']:g} s"),
    Variant("resume", None, lambda c: "resume" if c["resume"] else "noresume",
            lambda c: "with resume" if c["resume"] else "without resume"),
    Variant("storm", False, lambda c: "storm", lambda c: "storm"),
    Variant("network", None, lambda c: "n-" + networks.slug(network_of(c)),
            lambda c: f"over {network_of(c)['name']}", key=_network_key),
    Variant("proxy", None, lambda c: c["proxy"], lambda c: f"behind {c['proxy']}"),
    Variant("tls", False, lambda c: "tls", lambda c: "TLS"),
    Variant("repeat", 1, lambda c: f"rep{c['repeat']}", lambda c: f"repeat {c['repeat']}",
            splits_series=False),
)  # fmt: skip


def shown(cell: Mapping) -> list[Variant]:
    return [v for v in VARIANTS if cell.get(v.field, v.default) not in (v.default, None)]


def name(cell: Mapping) -> str:
    """Folder name, e.g. 'shortpoll-c100-r2-i0.5', 'socketio-c1000-r2-psio-p2-rep2'."""
    base = f"{cell['transport']}-c{cell['clients']}-r{cell['rate']:g}"
    return "-".join([base, *(v.tag(cell) for v in shown(cell))])


def point_name(cell: Mapping) -> str:
    """The name without the repeat: the measured point that repeats share."""
    return name({**cell, "repeat": 1})


def words(cell: Mapping, fields: set[str] | None = None) -> list[str]:
    """The shown variants in words; only those of `fields` when given."""
    return [v.words(cell) for v in shown(cell) if fields is None or v.field in fields]


def load_words(cell: Mapping) -> str:
    """What the clients were under: '2 events/s' or 'chat, each client sending 0.2/s'."""
    if cell.get("scenario", "broadcast") == "chat":
        return f"chat, each client sending {cell['rate']:g}/s"
    return f"{cell['rate']:g} events/s"


def label(cell: Mapping) -> str:
    """For progress lines: 'shortpoll x100 @ 2/s, every 0.5 s (repeat 2)'."""
    if cell.get("scenario", "broadcast") == "chat":
        text = f"{cell['transport']} x{cell['clients']} chat, each sending {cell['rate']:g}/s"
    else:
        text = f"{cell['transport']} x{cell['clients']} @ {cell['rate']:g}/s"
    extra = [v.words(cell) for v in shown(cell) if v.field not in ("scenario", "repeat")]
    text += "".join(f", {w}" for w in extra)
    if cell.get("repeat", 1) > 1:
        text += f" (repeat {cell['repeat']})"
    return text


def series_fields(cells: list[Mapping]) -> set[str]:
    """The variant fields a run varied (and so draws as separate series)."""
    return {
        v.field
        for v in VARIANTS
        if v.splits_series and len({v.key(c.get(v.field, v.default)) for c in cells}) > 1
    }


def series_key(cell: Mapping, varied: set[str]) -> tuple[str, str]:
    """(transport, variant words) of the chart series a cell belongs to."""
    return cell["transport"], ", ".join(words(cell, varied))
