"""Money summed exactly: every logged spend is rounded once to whole nano-dollars and sums are taken over those
integers, so a total does not depend on the order of its rows or on how they were split (a full scan and an
incremental report resuming from a checkpoint agree to the last bit, issue 16).

One rounding everywhere: `to_nanos` rounds `dollars * 1e9` half away from zero, with the same two IEEE double
operations the SQL of queries.nanos_parts performs on PostgreSQL and SQLite, so a row rounds alike in the database
and in Python. Amounts are floats at the edges (findings, JSON) and inside the scan: `to_dollars(n)` is the double
nearest n nano-dollars, and `to_nanos` gives n back exactly for any |n| below 2**51 nano-dollars (about $2.2M; a
larger amount may come back a nano-dollar off), which is how `add` and `total` combine sums already rounded.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

NANOS_PER_DOLLAR: Final = 1_000_000_000
SPLIT: Final = 2**32  # the SQL sums a row's nanos as two integers, high and low, so no BIGINT overflows (queries.nanos_parts)


def to_nanos(dollars: float) -> int:
    """Whole nano-dollars, half away from zero, as the SQL rounds them (a NaN or infinite amount is refused)."""
    scaled = dollars * 1e9
    return int(scaled - 0.5) if scaled < 0 else int(scaled + 0.5)


def to_dollars(nanos: int) -> float:
    """The double nearest `nanos` nano-dollars (int / int is correctly rounded in Python)."""
    return nanos / NANOS_PER_DOLLAR


def quantized(dollars: float) -> float:
    """An amount as it is counted: rounded to whole nano-dollars."""
    return to_dollars(to_nanos(dollars))


def add(*amounts: float) -> float:
    """The exact sum of amounts rounded to nano-dollars, whatever their order."""
    return to_dollars(sum(map(to_nanos, amounts)))


def total(amounts: Iterable[float]) -> float:
    """`add` over an iterable."""
    return to_dollars(sum(map(to_nanos, amounts)))


def text(dollars: float) -> str:
    """An amount as findings quote it: dollars to 4 decimals."""
    return f"${dollars:,.4f}"


def from_parts(high: object, low: object) -> int:
    """Nano-dollars from the two sums SQL returns (queries.nanos_parts); NULL sums are 0. PostgreSQL returns
    Decimal for SUM(bigint): int() of it is exact."""
    return int(high or 0) * SPLIT + int(low or 0)


def merge_totals(
    base: Iterable[tuple], plus: Iterable[tuple] = (), minus: Iterable[tuple] = (), measures: int = 2
) -> list[tuple]:
    """Totals keyed by all but their last `measures` fields, (..., spend, rows, other counts...), added and taken away,
    spend in whole nano-dollars; totals left with no row go. How an incremental report merges what it read with its
    checkpoint: the grouped ledger (checkpoint.merge_groups), its charged cells at entity grain, (api_key, team_id,
    user, end_user, model, model_group, model_id, spend, rows), and the report's spend cells (five measures)."""
    totals: dict[tuple, list] = {}
    get, counted = totals.get, range(1, measures)
    for sign, cells in ((1, base), (1, plus), (-1, minus)):
        for cell in cells:  # ~100k cells of a checkpoint, several times a report: no allocation but the new bucket
            key = tuple(cell[:-measures])
            bucket = get(key)
            if bucket is None:
                bucket = totals[key] = [0] * measures
            at = len(cell) - measures
            bucket[0] += sign * to_nanos(cell[at])
            for n in counted:
                bucket[n] += sign * cell[at + n]
    return [(*k, to_dollars(bucket[0]), *bucket[1:]) for k, bucket in totals.items() if bucket[1]]
