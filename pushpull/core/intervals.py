"""Confidence intervals for latency percentiles: a bootstrap over events (docs/intervals.md).

The deliveries of one event are not independent samples: every client gets the same burst, so
a slow publish or a busy moment of the server moves all of them at once. The statistical unit
of a broadcast is therefore the event. The load generator keeps, per event of the window, the
histogram of its deliveries' latencies (`per_event`: seq -> {HdrHistogram bucket index: count});
a resample draws as many events as were measured, with replacement, keeping each event's whole
burst, and reads the percentile off the merged buckets exactly as HdrHistogram does. The 95%
interval is the 2.5th and 97.5th percentile of the resampled estimates (the percentile
bootstrap).

    latency_intervals({1: {1200: 3, 1201: 1}, 2: {...}, ...}) -> {"p50": [lo, hi], ...}

What it does not see: run-to-run variation (another run on a noisier minute, another process
placement); `pushpull compare` weighs that with the noise band (docs/noise.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pushpull.core.histograms import PERCENTILES, new_histogram

RESAMPLES = 1000
CONFIDENCE = 0.95
MIN_EVENTS = 5  # fewer events than this: no interval (null), the bootstrap would mislead


def bucket_values(indices: list[int]) -> np.ndarray:
    """Each HdrHistogram bucket index as the value a percentile read reports for it (the
    bucket's highest equivalent value, as `get_value_at_percentile` does), in microseconds."""
    layout = new_histogram()
    return np.array(
        [layout.get_highest_equivalent_value(layout.get_value_from_index(i)) for i in indices],
        dtype=np.float64,
    )


def percentile_reads(cumulative: np.ndarray, values: np.ndarray, percentile: float) -> np.ndarray:
    """HdrHistogram's percentile read on each row of cumulative bucket counts."""
    totals = cumulative[:, -1]
    target = np.maximum(1, np.floor(percentile * totals / 100 + 0.5))
    return values[np.argmax(cumulative >= target[:, None], axis=1)]


def latency_intervals(
    per_event: Mapping[int, Mapping[int, int]],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, list[int] | None]:
    """{"p50": [lo, hi], "p90": ..., "p99": ..., "p999": ..., "events": N} in microseconds
    (None each when fewer than MIN_EVENTS events were measured). Deterministic for a seed."""
    seqs = sorted(s for s, counts in per_event.items() if sum(counts.values()))
    if len(seqs) < MIN_EVENTS:
        return {**{name: None for name in PERCENTILES}, "events": len(seqs)}
    indices = sorted({i for s in seqs for i in per_event[s]})
    column = {index: k for k, index in enumerate(indices)}
    matrix = np.zeros((len(seqs), len(indices)), dtype=np.float64)
    for row, seq in enumerate(seqs):
        for index, count in per_event[seq].items():
            matrix[row, column[index]] = count
    values = bucket_values(indices)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(seqs), np.full(len(seqs), 1 / len(seqs)), size=resamples)
    cumulative = np.cumsum(weights.astype(np.float64) @ matrix, axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    intervals: dict = {"events": len(seqs)}
    for name, percentile in PERCENTILES.items():
        reads = percentile_reads(cumulative, values, percentile)
        low, high = np.percentile(reads, [tail, 100 - tail], method="nearest")
        intervals[name] = [int(low), int(high)]
    return {**{name: intervals[name] for name in PERCENTILES}, "events": len(seqs)}


def overlap(a: list[int] | None, b: list[int] | None) -> bool | None:
    """Whether two intervals overlap (None when either is missing)."""
    if not a or not b:
        return None
    return a[0] <= b[1] and b[0] <= a[1]
