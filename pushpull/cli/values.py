"""The flags' values: each parser turns one flag's text into what the configuration holds, or
raises a `UsageError` in one line naming the flag, what was wrong and what is allowed. Lists take
commas or spaces (`10,100 500`) and make a sweep.
"""

from __future__ import annotations

import ipaddress

from pushpull.core import networks, transports
from pushpull.harness.config import SCENARIOS, UsageError
from pushpull.harness.mq import SCHEMES, redacted

MAX_CLIENTS = 20_000
MAX_DURATION_S = 3600.0
MAX_RATE = 10_000.0


def check_drain(drain: float, poll_intervals: list[float]) -> None:
    """A drain shorter than a short-poll interval would count the window's last events as lost
    (the poll that fetches them comes after Locust stopped)."""
    longest = max(poll_intervals, default=0.0)
    if drain < longest:
        raise UsageError(
            f"--drain: {drain:g} s is shorter than the short-poll interval {longest:g} s; events "
            f"published at the window's end would be counted lost (allowed: at least {longest:g})"
        )


def parse_list(flag: str, text: str, convert, what: str, example: str) -> list:
    """'10,100 500' -> [10, 100, 500]; commas or spaces separate, duplicates are dropped."""
    items = [item for item in text.replace(",", " ").split() if item]
    if not items:
        raise UsageError(f"{flag}: empty list (expected {what}, e.g. {flag} {example})")
    values = []
    for item in items:
        value = convert(flag, item, what, example)
        if value not in values:
            values.append(value)
    return values


def positive_int(flag: str, text: str, what: str, example: str, maximum: int = MAX_CLIENTS) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(
            f"{flag}: {text!r} is not a whole number (expected {what}, e.g. {flag} {example})"
        ) from None
    if not 1 <= value <= maximum:
        raise UsageError(f"{flag}: {value} is out of range (expected {what} from 1 to {maximum})")
    return value


def bounded_float(
    flag: str, text: str, what: str, example: str, low: float, high: float, low_open: bool = True
) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(
            f"{flag}: {text!r} is not a number (expected {what}, e.g. {flag} {example})"
        ) from None
    if value != value or (value <= low if low_open else value < low) or value > high:
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        raise UsageError(
            f"{flag}: {text} is out of range (expected {what} {bound} and at most {high:g})"
        )
    return value


def transport_name(flag: str, text: str, what: str, example: str) -> str:
    try:
        return transports.get(text).name
    except transports.UnknownTransport as exc:
        raise UsageError(f"{flag}: {exc}") from None


def client_kind(flag: str, text: str, what: str, example: str) -> str:
    if text not in transports.CLIENT_KINDS:
        raise UsageError(
            f"{flag}: unknown client {text!r} (allowed: {', '.join(transports.CLIENT_KINDS)})"
        )
    return text


def parse_client_kinds(text: str, chosen: list[str]) -> list[str]:
    """--client: load-generator clients to compare; each must belong to a chosen transport."""
    kinds = parse_list("--client", text, client_kind, "load-generator clients", "lean")
    for kind in kinds:
        offering = [t.name for t in transports.REGISTRY if kind in t.clients]
        if not any(name in chosen for name in offering):
            raise UsageError(
                f"--client: {kind!r} is a client of {', '.join(offering)} only, "
                f"and --transports has none of them"
            )
    return kinds


def parse_loadgen_procs(text: str) -> list[int]:
    def procs(flag, item, what, example):
        return positive_int(flag, item, what, example, maximum=64)

    return parse_list("--loadgen-procs", text, procs, "Locust processes", "2")


def parse_server_procs(text: str) -> list[int]:
    def procs(flag, item, what, example):
        return positive_int(flag, item, what, example, maximum=16)

    return parse_list("--server-procs", text, procs, "server processes", "1,2")


def parse_message_queues(text: str | None, server_procs: list[int]) -> list[str | None]:
    """--message-queue: Redis URLs, `none` for no queue (a list compares them in one run)."""
    if text is None:
        queues: list[str | None] = [None]
    else:

        def queue(flag, item, what, example):
            if item.lower() == "none":
                return None
            if "://" not in item or item.split("://", 1)[0] not in SCHEMES:
                raise UsageError(
                    f"{flag}: {redacted(item)!r} is not a Redis URL (expected {what}, "
                    f"e.g. {flag} {example}, or none)"
                )
            return item

        queues = parse_list(
            "--message-queue", text, queue, "redis://HOST:PORT/DB", "redis://127.0.0.1:6379/0"
        )
    if max(server_procs) > 1 and all(q is None for q in queues):
        raise UsageError(
            f"--server-procs: {max(server_procs)} server processes share one event stream only "
            "through a queue: add --message-queue redis://127.0.0.1:6379/0"
        )
    return queues


def parse_target(text: str | None, server_procs: list[int], queues: list[str | None]) -> str | None:
    """--target URL: a running server's base URL (http:// or https://, no path)."""
    if text is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise UsageError(
            f"--target: {text!r} is not a server's base URL (expected http://HOST:PORT, "
            "e.g. http://192.0.2.10:5001)"
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise UsageError(f"--target: {text!r}: {exc}") from None
    if max(server_procs) > 1 or any(q is not None for q in queues):
        raise UsageError(
            "--target: the harness starts no server for a target, so --server-procs and "
            "--message-queue do not apply (run the target's processes yourself)"
        )
    return text.rstrip("/")


def target_tls(target: str, args) -> tuple[list[bool], list[None]]:
    """A --target's TLS is its URL's scheme; nothing is started in front of it."""
    if args.proxy != "none":
        raise UsageError("--proxy: the harness starts no proxy in front of a --target")
    if args.tls != "off" or args.tls_cert or args.tls_key:
        raise UsageError(
            "--tls: a --target's TLS is its URL's (https://...); give the CA that signed its "
            "certificate with --tls-ca, or none for the system's store"
        )
    return [target.startswith("https://")], [None]


def parse_scenario(text: str) -> str:
    if text not in SCENARIOS:
        raise UsageError(f"--scenario: unknown scenario {text!r} (allowed: {', '.join(SCENARIOS)})")
    return text


def parse_send_rates(text: str) -> list[float]:
    def rate(flag, item, what, example):
        return bounded_float(flag, item, what, example, 0.0, 1000.0)

    return parse_list("--send-rate", text, rate, "messages per second per client", "0.2")


def parse_payload_bytes(text: str) -> list[int]:
    def size(flag, item, what, example):
        try:
            value = int(item)
        except ValueError:
            raise UsageError(
                f"{flag}: {item!r} is not a whole number (expected {what}, e.g. {flag} {example})"
            ) from None
        if not 0 <= value <= 60_000:
            raise UsageError(f"{flag}: {value} is out of range (expected {what} from 0 to 60000)")
        return value

    return parse_list("--payload-bytes", text, size, "bytes of padding per event", "1024")


def parse_churn_every(text: str) -> list[float]:
    def every(flag, item, what, example):
        value = bounded_float(flag, item, what, example, 0.0, 3600.0, low_open=False)
        if 0 < value < 0.1:
            raise UsageError(f"{flag}: {item} is too often (expected 0 for off, or 0.1 to 3600)")
        return value

    return parse_list(
        "--churn-every", text, every, "mean seconds between disconnects, 0 = off", "5"
    )


def off_or_on(flag, item, what, example) -> bool:
    if item not in ("off", "on"):
        raise UsageError(f"{flag}: {item!r} is not off or on (e.g. {flag} {example})")
    return item == "on"


def parse_resume(text: str) -> list[bool]:
    return parse_list("--resume", text, off_or_on, "off and/or on", "off,on")


def parse_tls(text: str) -> list[bool]:
    return parse_list("--tls", text, off_or_on, "off and/or on", "off,on")


PROXIES = ("none", "nginx")


def parse_proxies(text: str) -> list[str | None]:
    """--proxy: none and/or nginx (which must be installed)."""

    def proxy(flag, item, what, example):
        if item not in PROXIES:
            raise UsageError(
                f"{flag}: {item!r} is not one of {', '.join(PROXIES)} (e.g. {flag} {example})"
            )
        return None if item == "none" else item

    chosen = parse_list("--proxy", text, proxy, "proxies", "none,nginx")
    if "nginx" in chosen:
        from pushpull.harness.nginx import find_nginx

        if find_nginx() is None:
            raise UsageError(
                "--proxy nginx: nginx is not installed (apt-get install nginx; "
                "make production and .ci/run install it)"
            )
    return chosen


MAX_SOURCE_ADDRESSES = 4096
# nginx's ip_hash keys an IPv4 client on its first three octets: one address per /24 spreads
DEFAULT_SPREAD = [f"127.0.{k}.1" for k in range(1, 255)]


def parse_source_addresses(text: str | None, spread: bool) -> list[str]:
    """--source-addresses A-B, a CIDR, or one address, all on loopback (load goes nowhere else);
    by default none (127.0.0.1), or one per /24 of 127.0.1.1-127.0.254.1 when `spread` (nginx
    balancing several processes by ip_hash)."""
    if text is None:
        return list(DEFAULT_SPREAD) if spread else []
    flag, example = "--source-addresses", "127.0.0.2-127.0.0.254 or 127.0.1.0/24"
    try:
        if "/" in text:
            network = ipaddress.ip_network(text.strip(), strict=False)
            hosts = list(network.hosts()) if network.num_addresses > 2 else list(network)
            first, last = (hosts[0], hosts[-1]) if hosts else (None, None)
            addresses = hosts[: MAX_SOURCE_ADDRESSES + 1]
        else:
            low, _, high = text.strip().partition("-")
            first = ipaddress.ip_address(low.strip())
            last = ipaddress.ip_address(high.strip()) if high else first
            if int(last) < int(first):
                raise UsageError(f"{flag}: {text!r} ends below its start (e.g. {flag} {example})")
            count = int(last) - int(first) + 1
            addresses = [first + k for k in range(min(count, MAX_SOURCE_ADDRESSES + 1))]
    except ValueError:
        raise UsageError(
            f"{flag}: {text!r} is not an address range or network (e.g. {flag} {example})"
        ) from None
    if not addresses:
        raise UsageError(f"{flag}: {text!r} holds no address (e.g. {flag} {example})")
    if len(addresses) > MAX_SOURCE_ADDRESSES:
        raise UsageError(f"{flag}: {text!r} holds more than {MAX_SOURCE_ADDRESSES} addresses")
    outside = next((a for a in (first, last) if a is not None and not a.is_loopback), None)
    if outside is not None or any(a.version != 4 for a in addresses[:1]):
        raise UsageError(
            f"{flag}: {outside or addresses[0]} is outside loopback IPv4 (127.0.0.0/8): the "
            "clients connect from loopback addresses only"
        )
    return [str(a) for a in addresses]


def check_churn(churn_every: list[float], client_kinds: list[str]) -> None:
    if any(churn_every) and [k for k in client_kinds if k != "lean"]:
        raise UsageError(
            "--churn-every: only the lean clients churn (leave out --client "
            f"{','.join(k for k in client_kinds if k != 'lean')})"
        )


def parse_clients(text: str) -> list[int]:
    return parse_list("--clients", text, positive_int, "client counts", "10,100,500")


def parse_transports(text: str) -> list[str]:
    return parse_list(
        "--transports", text, transport_name, "transports", ",".join(transports.NAMES)
    )


def parse_rates(text: str) -> list[float]:
    def rate(flag, item, what, example):
        return bounded_float(flag, item, what, example, 0.0, MAX_RATE)

    return parse_list("--rate", text, rate, "events per second", "2")


def parse_poll_intervals(text: str) -> list[float]:
    def interval(flag, item, what, example):
        return bounded_float(flag, item, what, example, 0.0, 60.0)

    return parse_list("--poll-interval", text, interval, "seconds between short polls", "0.5")


def parse_duration(text: str) -> float:
    return bounded_float("--duration", text, "seconds of measurement", "20", 0.0, MAX_DURATION_S)


def parse_port(text: str, flag: str = "--port", zero: bool = True) -> int:
    allowed = "0-65535, 0 picks a free port" if zero else "1-65535"
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a port number ({allowed})") from None
    if not (0 if zero else 1) <= value <= 65535:
        raise UsageError(f"{flag}: {value} is out of range ({allowed})")
    return value


def parse_workers(text: str, loadgen_procs: list[int]) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(
            f"--loadgen-workers: {text!r} is not a whole number (workers, e.g. 2; 0 for none)"
        ) from None
    if not 0 <= value <= 256:
        raise UsageError(f"--loadgen-workers: {value} is out of range (0 to 256)")
    if value and max(loadgen_procs) > 1:
        raise UsageError(
            "--loadgen-workers: use it or --loadgen-procs, not both (workers bring their own "
            "processes: start several `pushpull worker` on a machine)"
        )
    return value


def parse_spawn_rate(text: str) -> float:
    return bounded_float("--spawn-rate", text, "clients per second", "200", 0.0, 100_000.0)


def parse_repeat(text: str) -> int:
    return positive_int("--repeat", text, "a repeat count", "3", maximum=100)


def parse_networks(text: str) -> list[str | None]:
    """--network: built-in profiles, `loopback`, or key=value/... specs (pushpull networks)."""

    def network(flag, item, what, example):
        try:
            profile = networks.parse(item)
        except networks.NetworkSpecError as exc:
            raise UsageError(f"{flag}: {exc}") from None
        return None if profile is None else profile["name"]

    items = [item for item in text.split(",") if item.strip()]  # a spec holds no comma or space
    if not items:
        raise UsageError("--network: empty list (expected networks, e.g. --network loopback,lte)")
    found: list[str | None] = []
    for item in items:
        value = network("--network", item.strip(), "networks", "loopback,lte")
        if value not in found:
            found.append(value)
    return found
