"""Capacity at a latency limit: for each transport, step clients up until p99 delivery latency
passes the limit, events are lost, errors appear, or the load generator becomes the bottleneck
(then the capacity is a lower bound and says so, rather than blame the server).

    pushpull capacity --transports socketio,longpoll --slo-p99 250 --start 100 --step 250 --max 5000

Writes capacity.json into the run folder after every step:
    {"slo_p99_ms", "start", "step", "max", "transports": {name: {"capacity", "stopped_at",
     "reason", "lower_bound", "steps": [[clients, p99_ms], ...]}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from pushpull.config import BenchConfig, Cell
from pushpull.manifest import write_json


def verdict(cell: dict, slo_p99_us: float) -> str | None:
    """Why this cell fails the limit, or None if it holds."""
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
            }  # fmt: skip

    def first_cell(self, transport: str, clients: int) -> Cell:
        template = self.config.cells()
        cell = next(c for c in template if c.transport == transport)
        return replace(cell, clients=clients)

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
        result = self.results[last["transport"]]
        p99 = last["latency_us"]["p99"]
        result["steps"].append([last["clients"], None if p99 is None else p99 / 1000])
        reason = verdict(last, self.slo_p99_ms * 1000)
        following = None
        if reason is None:
            result["capacity"] = last["clients"]
            if last["clients"] + self.step <= self.maximum:
                following = self.first_cell(last["transport"], last["clients"] + self.step)
            else:
                result["reason"] = f"reached --max {self.maximum} within the limit"
                result["lower_bound"] = True
        else:
            result["stopped_at"] = last["clients"]
            result["reason"] = reason
            result["lower_bound"] = last["client_bound"]
        self.save()
        return following

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
            lines.append(f"  {transport}: {amount}{stop if r['reason'] else ''}")
        return "\n".join(lines)
