"""The one histogram layout of pushpull: integer microseconds from 1 us to 60 s at 3 significant
digits (HdrHistogram), the names of the histograms a load-generator process keeps, the percentiles
every summary reports, and a fast exact `record_us`. The load generator records into these, the
harness merges and reads them, the analysis and validate read them back.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

HIST_LOWEST_US = 1
HIST_HIGHEST_US = 60_000_000
HIST_DIGITS = 3
HISTOGRAMS = (
    "latency", "from_schedule", "warmup", "loop_lag", "catchup", "connect", "caught_up",
    "first_connect",
)  # fmt: skip
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_DIGITS)


_LAYOUT = new_histogram()  # every histogram here has this layout (the same range and digits)
_HALF_MAG = _LAYOUT.sub_bucket_half_count_magnitude
_HALF_MAG_PLUS_1 = _HALF_MAG + 1
_HALF_COUNT = _LAYOUT.sub_bucket_half_count


def record_us(histogram: HdrHistogram, value_us: int) -> int:
    """Record, clamped to the trackable range (a same-host latency can come out 0 us).

    The same arithmetic as `HdrHistogram.record_value` (bucket from the value's bit length,
    sub-bucket by shift), inlined: it runs twice per delivery, and the library's five method
    calls per value cost ~2.4 us here against ~0.7 us. tests/test_recorder.py checks that both
    give identical histograms over the whole range. Returns the bucket's index."""
    if value_us < HIST_LOWEST_US:
        value_us = HIST_LOWEST_US
    elif value_us > HIST_HIGHEST_US:
        value_us = HIST_HIGHEST_US
    h = histogram
    bucket = (value_us | h.sub_bucket_mask).bit_length() - h.unit_magnitude - _HALF_MAG_PLUS_1
    index = ((bucket + 1) << _HALF_MAG) + (value_us >> (bucket + h.unit_magnitude)) - _HALF_COUNT
    h.counts[index] += 1
    h.total_count += 1
    if value_us < h.min_value:
        h.min_value = value_us
    if value_us > h.max_value:
        h.max_value = value_us
    return index
