"""Emulated networks: the built-in profiles (each number with its public source) and the parser
of `--network` items. A profile is part of a cell: its folder name, its label, its chart series
and summary.json's `network`, with every parameter (docs/network.md).

    parse("lte")                      -> the LTE profile (WebPageTest: 12/12 Mbit/s, 70 ms)
    parse("rtt=80ms/jitter=10ms/down=10mbit/up=2mbit/loss=1%")
    parse("loopback")                 -> None: no emulator (today's behaviour, the default)

A profile is a plain dict (JSON as it is): name, rtt_ms, up_delay_ms, down_delay_ms (the round
trip split evenly unless `up-delay=`/`down-delay=` say otherwise), jitter_ms, down_kbit, up_kbit
(None: no rate limit) and loss_pct, plus `source` for a built-in.
"""

from __future__ import annotations

import re

LOOPBACK = "loopback"
WEBPAGETEST = "WebPageTest's connectivity profiles (docs/network.md)"
# name: (rtt ms, down kbit/s, up kbit/s, what it is and where the numbers come from)
BUILTINS: dict[str, tuple[float, float | None, float | None, str]] = {
    "lan": (0.5, 1_000_000, 1_000_000, "a switched gigabit LAN: 0.5 ms round trip, 1 Gbit/s "
            "each way (this project's round figure: no public preset names a LAN)"),
    "fios": (4, 20_000, 5_000, f"FIOS fibre, 20/5 Mbit/s, 4 ms: {WEBPAGETEST}"),
    "cable": (28, 5_000, 1_000, f"Cable, 5/1 Mbit/s, 28 ms: {WEBPAGETEST}"),
    "dsl": (50, 1_500, 384, f"DSL, 1.5 Mbit/s / 384 kbit/s, 50 ms: {WEBPAGETEST}"),
    "lte": (70, 12_000, 12_000, f"LTE, 12/12 Mbit/s, 70 ms: {WEBPAGETEST}"),
    "4g": (170, 9_000, 9_000, f"4G, 9/9 Mbit/s, 170 ms: {WEBPAGETEST}"),
    "3gfast": (150, 1_600, 768, f"3G Fast, 1.6 Mbit/s / 768 kbit/s, 150 ms: {WEBPAGETEST}"),
    "3g": (300, 1_600, 768, f"3G, 1.6 Mbit/s / 768 kbit/s, 300 ms: {WEBPAGETEST}"),
    "satellite": (558, None, None, "a geostationary satellite hop, 558 ms round trip (RFC 2488, "
                  "section 2: the propagation delay alone); no rate limit (the RFC gives none)"),
}  # fmt: skip
KEYS = ("rtt", "up-delay", "down-delay", "jitter", "down", "up", "loss")
TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
RATE_UNITS = {"kbit": 1.0, "mbit": 1000.0, "gbit": 1_000_000.0}
MAX_DELAY_MS = 10_000.0
MAX_RATE_KBIT = 10_000_000.0
NUMBER = re.compile(r"^(\d+(?:\.\d+)?)([a-z%]*)$")


class NetworkSpecError(ValueError):
    """One line: which key of which item, what was wrong, what is allowed."""


def builtin(name: str) -> dict:
    rtt, down, up, source = BUILTINS[name]
    return profile(name, rtt, rtt / 2, rtt / 2, 0.0, down, up, 0.0, source)


def profile(name, rtt, up_delay, down_delay, jitter, down, up, loss, source=None) -> dict:
    return {
        "name": name,
        "rtt_ms": round(up_delay + down_delay, 6),
        "up_delay_ms": round(up_delay, 6),
        "down_delay_ms": round(down_delay, 6),
        "jitter_ms": jitter,
        "down_kbit": down,
        "up_kbit": up,
        "loss_pct": loss,
        **({"source": source} if source else {}),
    }


def parse(item: str) -> dict | None:
    """One `--network` item: a built-in name, `loopback` (None), or `key=value/...`."""
    text = item.strip().lower()
    if text == LOOPBACK:
        return None
    if text in BUILTINS:
        return builtin(text)
    if "=" not in text:
        raise NetworkSpecError(
            f"{item!r} is not a network (allowed: {LOOPBACK}, {', '.join(BUILTINS)}, or "
            "key=value/... with keys rtt, up-delay, down-delay, jitter, down, up, loss, "
            "e.g. rtt=80ms/down=10mbit/loss=1%)"
        )
    given: dict[str, float] = {}
    for part in text.split("/"):
        key, _, value = part.partition("=")
        if key not in KEYS:
            raise NetworkSpecError(f"{item!r}: unknown key {key!r} (allowed: {', '.join(KEYS)})")
        if key in given:
            raise NetworkSpecError(f"{item!r}: {key} is given twice")
        given[key] = value_of(item, key, value)
    return from_keys(item, given)


def value_of(item: str, key: str, value: str) -> float:
    match = NUMBER.match(value)
    if key in ("down", "up"):
        units, what, high = RATE_UNITS, "a rate with its unit, e.g. 10mbit, 384kbit", MAX_RATE_KBIT
    elif key == "loss":
        units, what, high = {"%": 1.0}, "a percentage from 0 to 100, e.g. 1%", 100.0
    else:
        units, what, high = TIME_UNITS, "a time with its unit, e.g. 80ms, 0.5s, 500us", None
    if value.startswith("-"):
        raise NetworkSpecError(f"{item!r}: {key}={value} is negative (expected {what})")
    if not match or match.group(2) not in units:
        raise NetworkSpecError(f"{item!r}: {key}={value!r} is not {what}")
    number = float(match.group(1)) * units[match.group(2)]
    high = MAX_DELAY_MS if high is None else high
    if number > high or (key in ("down", "up") and number <= 0):
        bound = f"above 0 and at most {high:g}" if key in ("down", "up") else f"at most {high:g}"
        unit = "kbit/s" if key in ("down", "up") else "%" if key == "loss" else "ms"
        raise NetworkSpecError(f"{item!r}: {key}={value} is out of range ({bound} {unit})")
    return number


def from_keys(item: str, given: dict[str, float]) -> dict:
    rtt = given.get("rtt")
    up, down = given.get("up-delay"), given.get("down-delay")
    if rtt is not None and up is not None and down is not None and abs(up + down - rtt) > 1e-9:
        raise NetworkSpecError(
            f"{item!r}: up-delay + down-delay ({up + down:g} ms) is not rtt ({rtt:g} ms); "
            "give rtt, or the two delays"
        )
    if up is None and down is None:
        up = down = (rtt or 0.0) / 2
    elif up is None:
        up = max(0.0, (rtt if rtt is not None else 2 * down) - down)
    elif down is None:
        down = max(0.0, (rtt if rtt is not None else 2 * up) - up)
    if rtt is not None and (up > rtt or down > rtt):
        raise NetworkSpecError(f"{item!r}: a one-way delay is longer than rtt ({rtt:g} ms)")
    return profile(
        item.strip().lower(),
        rtt,
        up,
        down,
        given.get("jitter", 0.0),
        given.get("down"),
        given.get("up"),
        given.get("loss", 0.0),
    )


def slug(network: dict | None) -> str:
    """The profile in a cell's folder name: `lte`, `rtt100ms-loss1pct`; '' for loopback."""
    if network is None:
        return ""
    name = network["name"]
    return re.sub(r"[^a-z0-9.]+", "-", name.replace("%", "pct").replace("=", "")).strip("-")


def describe(network: dict | None) -> str:
    """In words, for labels and tables: 'lte (70 ms, 12/12 Mbit/s)', 'loopback'."""
    if network is None:
        return LOOPBACK
    parts = [f"{network['rtt_ms']:g} ms"]
    if network["jitter_ms"]:
        parts.append(f"jitter {network['jitter_ms']:g} ms")
    if network["down_kbit"] or network["up_kbit"]:
        parts.append(f"down {rate(network['down_kbit'])}, up {rate(network['up_kbit'])}")
    if network["loss_pct"]:
        parts.append(f"loss {network['loss_pct']:g}%")
    return f"{network['name']} ({', '.join(parts)})"


def rate(kbit: float | None) -> str:
    if kbit is None:
        return "unlimited"
    return f"{kbit / 1000:g} Mbit/s" if kbit >= 1000 else f"{kbit:g} kbit/s"


def text_table() -> str:
    """`pushpull networks`: the built-in profiles with their sources."""
    rows = [("network", "round trip", "down", "up", "source")]
    rows.append(
        (LOOPBACK, "(none)", "-", "-", "no emulator: the client talks to the server on loopback")
    )
    for name in BUILTINS:
        p = builtin(name)
        rows.append((name, f"{p['rtt_ms']:g} ms", rate(p["down_kbit"]), rate(p["up_kbit"]),
                     p["source"]))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4] for r in rows)
