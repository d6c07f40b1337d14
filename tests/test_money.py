"""auditor.money (issue 16): a spend rounds to whole nano-dollars alike in Python and in the SQL of PostgreSQL and
SQLite, sums of them do not depend on order or split, and an amount already rounded survives to_nanos exactly."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Float, Integer, MetaData, Table, create_engine, func, insert, select

from auditor.ledger.queries import SPEND_BOUND, nanos_parts, summed_nanos
from auditor.money import add, from_parts, merge_totals, to_dollars, to_nanos, total

TIES = [k / 2 * 1e-9 for k in range(-41, 42)]  # spends whose nano-dollars may end in exactly .5 once scaled


def spends(seed: int = 16, count: int = 4000) -> list[float]:
    """Ties, signs, tiny and huge amounts (up to just under SPEND_BOUND), float32 values as some proxies log them."""
    rng = random.Random(seed)
    found = [0.0, -0.0, 1e-17, 0.1, 0.1 + 0.2, 123.4567891235, 999999999999999.9, -999999999999999.9, *TIES]
    for _ in range(count):
        pick = rng.random()
        if pick < 0.3:
            found.append(rng.uniform(-10, 10))
        elif pick < 0.5:
            found.append(round(rng.uniform(0, 100), rng.randint(0, 12)))
        elif pick < 0.7:
            found.append(rng.uniform(-SPEND_BOUND, SPEND_BOUND) * rng.random() ** 8)
        elif pick < 0.85:
            found.append(struct.unpack("f", struct.pack("f", rng.uniform(-5, 5)))[0])
        else:
            found.append(rng.uniform(0, 1e-6))
    return found


def test_sql_rounds_each_spend_as_python_does_and_sums_it_exactly(any_url):
    values = spends()
    table = Table("amounts", MetaData(), Column("id", Integer, primary_key=True), Column("spend", Float(53)))
    engine = create_engine(any_url)
    try:
        with engine.begin() as conn:
            table.metadata.create_all(conn)
            conn.execute(insert(table), [{"id": n, "spend": v} for n, v in enumerate(values)])
            high, low = nanos_parts(table.c.spend)
            rows = {n: from_parts(h, lo) for n, h, lo in conn.execute(select(table.c.id, high, low))}
            assert rows == {n: to_nanos(v) for n, v in enumerate(values)}
            summed = conn.execute(select(*summed_nanos(table.c.spend))).one()
            assert from_parts(*summed) == sum(map(to_nanos, values))
            assert (
                from_parts(*conn.execute(select(*summed_nanos(table.c.spend)).where(func.abs(table.c.spend) > 1e20)).one()) == 0
            )
    finally:
        engine.dispose()


def test_an_amount_already_rounded_comes_back_exactly():
    rng = random.Random(7)
    for _ in range(20000):
        nanos = rng.randint(-(2**51), 2**51)
        assert to_nanos(to_dollars(nanos)) == nanos


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=-5e4, max_value=5e4, allow_nan=False), max_size=40), st.randoms())
def test_sums_do_not_depend_on_order_or_split(amounts, rng):
    """Partial sums stay below 2**51 nano-dollars (about $2.2M), where a rounded amount survives to_nanos."""
    whole = total(amounts)
    shuffled = list(amounts)
    rng.shuffle(shuffled)
    split = rng.randint(0, len(shuffled))
    assert add(total(shuffled[:split]), total(shuffled[split:])) == whole
    assert to_nanos(whole) == sum(map(to_nanos, amounts))


def test_merged_totals_add_and_take_away_every_measure_and_drop_what_is_left_empty():
    """The report's spend cells carry five measures (spend, rows, prompt and completion tokens, cache hits): each
    is added and taken away, spend as nano-dollars, and a cell left with no row goes whatever its other counts."""
    base = [("k", "m", 0.1, 2, 30, 7, 1), ("k", "n", 1 / 3, 1, 5, 5, 0)]
    plus = [("k", "m", 0.2, 1, 10, 3, 1)]
    minus = [("k", "n", 1 / 3, 1, 5, 4, 0)]
    assert merge_totals(base, plus, minus, measures=5) == [("k", "m", 0.3, 3, 40, 10, 2)]  # 0.1 + 0.2 as nanos: 0.3
    assert merge_totals([("a", 0.5, 1)], minus=[("a", 0.25, 0)]) == [("a", 0.25, 1)]  # two measures: (spend, rows)
