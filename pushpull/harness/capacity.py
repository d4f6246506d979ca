"""Capacity at a latency limit: for each transport, step clients up until p99 delivery latency
passes the limit, events are lost, errors appear, or the load generator becomes the bottleneck
(then the capacity is a lower bound and says so, rather than blame the server).

    pushpull capacity --transports socketio,longpoll --slo-p99 250 --start 100 --step 250 --max 5000

With `--capacity-repeats N` (N >= 2, `make capacity` uses 3) the search then refines: it bisects
between the last passing and the first failing count down to a quarter of --step, and measures
both ends of that bracket N times. The capacity is reported as a range (`capacity_range`): lo is
the highest count at and below which every measurement held the limit with its whole p99
interval (docs/intervals.md) under it; hi is the lowest count at and above which no measurement
held it (every p99 over the limit, whatever its interval, or loss, errors). A measurement where
the load generator saturated says nothing of the server and is left out. Counts
between them held in some runs and not in others, or held with an interval reaching over the
limit: the capacity is somewhere in [lo, hi). The claim "holds at lo" needs
confidence; "did not hold from hi on" is what was seen, run after run.

Writes capacity.json into the run folder after every step:
    {"slo_p99_ms", "start", "step", "max", "repeats", "rule", "transports": {name: {"capacity",
     "stopped_at", "reason", "lower_bound", "steps": [[clients, p99_ms], ...],
     "measurements": [[clients, outcome, p99_ms, [lo_ms, hi_ms] | null], ...],
     "capacity_range": [lo | null, hi | null]}}}
with outcome "pass" (p99 and its interval under the limit), "fail" (p99 and its interval over it,
or loss, errors), "straddle-under" (p99 under, interval reaching over), "straddle-over" (p99
over, interval reaching under) or "saturated" (the load generator was the bottleneck).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from pushpull.core.files import write_json
from pushpull.harness.config import BenchConfig, Cell

RANGE_RULE = (
    "lo: the highest count at and below which every measurement held (p99 and its 95% interval "
    "under the limit, nothing lost, no errors); hi: the lowest count at and above which no "
    "measurement held (p99 over the limit whatever its interval, or loss, errors); a "
    "measurement where the load generator saturated says nothing of the server and is left out"
)
OVER = {"fail", "straddle-over"}


def outcome(cell: dict, slo_p99_us: float) -> str:
    """'pass', 'fail', 'straddle-under' / 'straddle-over' (the p99 is under / over the
    limit, its interval on both sides), or 'saturated' (the load generator's limit, not the
    server's: neither held nor failed)."""
    if cell["client_bound"]:
        return "saturated"
    reason = verdict(cell, slo_p99_us)
    p99 = cell["latency_us"]["p99"]
    if reason is not None and (p99 is None or p99 <= slo_p99_us):
        return "fail"  # loss, errors or nothing delivered
    ci = (cell.get("latency_ci_us") or {}).get("p99")
    if reason is None:
        return "pass" if ci is None or ci[1] <= slo_p99_us else "straddle-under"
    return "fail" if ci is None or ci[0] > slo_p99_us else "straddle-over"


def capacity_range(measurements: list[list]) -> list[int | None]:
    """[lo, hi] by RANGE_RULE from [[clients, outcome, ...], ...] (None where no count
    qualifies: lo when the smallest count did not always hold, hi when the largest held once)."""
    measurements = [m for m in measurements if m[1] != "saturated"]
    counts = sorted({m[0] for m in measurements})
    outcomes = {c: {m[1] for m in measurements if m[0] == c} for c in counts}
    lo = None
    for c in counts:
        if outcomes[c] != {"pass"}:
            break
        lo = c
    hi = None
    for c in reversed(counts):
        if not outcomes[c] <= OVER:
            break
        hi = c
    return [lo, hi]


def verdict(cell: dict, slo_p99_us: float) -> str | None:
    """Why this cell fails the limit, or None if it holds."""
    if cell.get("descriptors_exhausted"):
        return cell["descriptors_exhausted"]
    if cell["client_bound"]:
        return "the load generator saturated (" + "; ".join(cell["client_bound_reasons"]) + ")"
    if cell["errors"]:
        return f"{cell['errors']} errors"
    if cell["lost"]:
        return f"{cell['lost']} of {cell['expected']} deliveries lost"
    p99 = cell["latency_us"]["p99"]
    if p99 is None:
        return "nothing was delivered"
    if p99 > slo_p99_us:
        return f"p99 {p99 / 1000:.0f} ms is over the {slo_p99_us / 1000:g} ms limit"
    return None


@dataclass
class CapacitySearch:
    config: BenchConfig
    slo_p99_ms: float
    start: int
    step: int
    maximum: int
    repeats: int = 1  # >= 2: bisect the bracket, then measure its ends this many times each
    path: Path | None = None
    results: dict = field(default_factory=dict)
    _order: list[str] = field(default_factory=list)
    _seen: int = 0  # summaries of `done` already taken into account
    _following: Cell | None = None  # the step decided by the last summary

    def __post_init__(self) -> None:
        self._order = list(self.config.transports)
        for transport in self._order:
            self.results[transport] = {
                "capacity": None, "stopped_at": None, "reason": None, "lower_bound": False, "steps": [],
                "measurements": [], "capacity_range": [None, None],
            }  # fmt: skip
        self._bracket: dict[str, list] = {}  # transport -> [last pass, first fail]
        self._repeat: dict[str, list[int]] = {}  # transport -> counts still to re-measure

    def first_cell(self, transport: str, clients: int) -> Cell:
        """The cell for `clients`; a count measured before is its next repeat (its own folder)."""
        template = self.config.cells()
        cell = next(c for c in template if c.transport == transport)
        measured = sum(1 for m in self.results[transport]["measurements"] if m[0] == clients)
        return replace(cell, clients=clients, repeat=measured + 1)

    def next_cell(self, done: list[dict]) -> Cell | None:
        """The next step: after a cell within the limit, the same transport with more clients;
        after one past it (or a failed one, see `failed`), the next transport's first step."""
        for last in done[self._seen :]:
            self._following = self._after(last)
        self._seen = len(done)
        if self._following is not None:
            cell, self._following = self._following, None
            return cell
        untried = [t for t in self._order if not self.results[t]["steps"]]
        return self.first_cell(untried[0], self.start) if untried else None

    def _after(self, last: dict) -> Cell | None:
        transport = last["transport"]
        result = self.results[transport]
        p99 = last["latency_us"]["p99"]
        result["steps"].append([last["clients"], None if p99 is None else p99 / 1000])
        ci = (last.get("latency_ci_us") or {}).get("p99")
        result["measurements"].append(
            [last["clients"], outcome(last, self.slo_p99_ms * 1000),
             None if p99 is None else p99 / 1000, None if ci is None else [v / 1000 for v in ci]]
        )  # fmt: skip
        result["capacity_range"] = capacity_range(result["measurements"])
        reason = verdict(last, self.slo_p99_ms * 1000)
        if transport in self._repeat or transport in self._bracket:
            following = self._refine(last, reason)
            self.save()
            return following
        following = None
        if reason is None:
            result["capacity"] = last["clients"]
            if last["clients"] + self.step <= self.maximum:
                following = self.first_cell(last["transport"], last["clients"] + self.step)
            else:
                result["reason"] = f"reached --max {self.maximum} within the limit"
                result["lower_bound"] = True
                following = self._start_repeats(transport, [last["clients"]])
        else:
            result["stopped_at"] = last["clients"]
            result["reason"] = reason
            result["lower_bound"] = last["client_bound"]
            if result["capacity"] is not None and not last["client_bound"] and self.repeats > 1:
                self._bracket[transport] = [result["capacity"], last["clients"]]
                following = self._bisect(transport)
        self.save()
        return following

    # -- refining (--capacity-repeats >= 2) -----------------------------------------------------
    def resolution(self) -> int:
        return max(1, self.step // 4)

    def _bisect(self, transport: str) -> Cell | None:
        low, high = self._bracket[transport]
        if high - low <= self.resolution():
            del self._bracket[transport]
            return self._start_repeats(transport, [low, high])
        return self.first_cell(transport, (low + high) // 2)

    def _start_repeats(self, transport: str, ends: list[int]) -> Cell | None:
        """Measure each end of the bracket until it has `repeats` measurements, alternating."""
        if self.repeats < 2:
            return None
        measured = self.results[transport]["measurements"]
        todo = []
        for _ in range(self.repeats):
            for count in ends:
                if sum(1 for m in measured if m[0] == count) + todo.count(count) < self.repeats:
                    todo.append(count)
        self._repeat[transport] = todo
        return self._next_repeat(transport)

    def _next_repeat(self, transport: str) -> Cell | None:
        todo = self._repeat.get(transport) or []
        if not todo:
            self._repeat.pop(transport, None)
            return None
        return self.first_cell(transport, todo.pop(0))

    def _refine(self, last: dict, reason: str | None) -> Cell | None:
        transport, result = last["transport"], self.results[last["transport"]]
        if last["client_bound"]:  # the load generator is the limit now: stop refining
            self._bracket.pop(transport, None)
            self._repeat.pop(transport, None)
            result["reason"] = "the load generator saturated while refining (a lower bound)"
            result["lower_bound"] = True
            return None
        if transport in self._repeat:
            return self._next_repeat(transport)
        bracket = self._bracket[transport]
        if reason is None:
            bracket[0] = result["capacity"] = last["clients"]
        else:
            bracket[1] = result["stopped_at"] = last["clients"]
            result["reason"] = reason
        return self._bisect(transport)

    def failed(self, cell: Cell, reason: str) -> None:
        """A step whose cell failed (server or Locust died): the search of that transport stops
        there, with the reason, and goes on to the next transport."""
        result = self.results[cell.transport]
        result["steps"].append([cell.clients, None])
        result["stopped_at"] = cell.clients
        result["reason"] = f"the cell failed: {reason}"
        self._following = None
        self.save()

    def save(self) -> None:
        if self.path is not None:
            write_json(self.path, self.to_json())

    def to_json(self) -> dict:
        return {
            "slo_p99_ms": self.slo_p99_ms,
            "start": self.start,
            "step": self.step,
            "max": self.maximum,
            "repeats": self.repeats,
            "rule": RANGE_RULE,
            "transports": self.results,
        }

    def report(self) -> str:
        lines = [f"capacity at p99 <= {self.slo_p99_ms:g} ms:"]
        for transport, r in self.results.items():
            if r["capacity"] is None:
                amount = f"below {self.start} clients"
            else:
                amount = f"{'at least ' if r['lower_bound'] else ''}{r['capacity']} clients"
            stop = (
                f" (at {r['stopped_at']}: {r['reason']})"
                if r["stopped_at"]
                else f" ({r['reason']})"
            )
            low, high = r["capacity_range"]
            if self.repeats > 1 and (low is not None or high is not None):
                amount += f", range [{low if low is not None else '-'}, {high or '-'}]"
            lines.append(f"  {transport}: {amount}{stop if r['reason'] else ''}")
        return "\n".join(lines)
