"""The ledger as spend lines: one grouped query (spend_queries.ledger_cells) merged into entity x model group x
period lines (spend.merge), with each entity's alias. For `auditor spend`, the report's "where the money went" and
auditor.api.spend; the pure grouping is in spend.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auditor.ledger.spend_queries import Cell
from auditor.money import merge_totals


@dataclass(frozen=True)
class MoneyCells:
    """The report's "where the money went" as ledger cells (spend_queries.Cell): per key and logged model over the
    whole range, and per local day and logged model. Both are small (keys x models, days x models), so a report
    run keeps them in its checkpoint and report --incremental reads only the rows that ended since its cut."""

    by_key: list[Cell]
    by_day: list[Cell]

    def merged(self, plus: MoneyCells | None = None, minus: MoneyCells | None = None) -> MoneyCells:
        def merge(base: list[Cell], more: list[Cell], less: list[Cell]) -> list[Cell]:
            return [Cell(*cell) for cell in merge_totals(base, more, less, measures=5)]

        plus, minus = plus or MoneyCells([], []), minus or MoneyCells([], [])
        return MoneyCells(merge(self.by_key, plus.by_key, minus.by_key), merge(self.by_day, plus.by_day, minus.by_day))


def money_cells(conn, caps, where, zone_name: str | None) -> MoneyCells:
    """The ledger's rows in `where` as MoneyCells: two grouped queries, each output a few thousand cells."""
    from auditor.audit import spend
    from auditor.ledger import queries, spend_queries
    from auditor.litellm.periods import zone

    offsets = ((None, 0),)
    if conn.dialect.name != "postgresql":
        offsets = spend.offset_changes(zone(zone_name), *queries.spend_time_range(conn, where))
    return MoneyCells(
        spend_queries.ledger_cells(conn, caps, where, "key"),
        spend_queries.ledger_cells(conn, caps, where, (), "day", offsets, zone_name or "UTC"),
    )


def money_overview(session, cells: MoneyCells) -> dict[str, Any]:
    """The report's "where the money went" (spend.overview) from its cells, keys named as `auditor spend` names them."""
    from auditor.audit import spend
    from auditor.litellm.resolver import Resolver

    options = session.options
    return spend.overview(
        *_lines(session, cells.by_key, "key"),
        cells.by_day,
        Resolver(session.catalogue),
        zone_name=options.timezone or "UTC",
        since=options.since,
        until=options.until,
    )


def ledger_lines(session, by: str, period: str) -> tuple[dict, dict[str, int]]:
    """The ledger in the session's --since/--until as spend lines (spend.merge) of `by` x model group x `period`,
    in the session's zone: one grouped query. For `auditor spend`."""
    from auditor.audit import spend
    from auditor.ledger import queries, spend_queries
    from auditor.litellm.periods import zone

    conn, caps, options = session.conn, session.caps, session.options
    where = queries.SpendFilter(since=options.since, until=options.until)
    offsets = ((None, 0),)
    if conn.dialect.name != "postgresql" and period != "total":
        offsets = spend.offset_changes(zone(options.timezone), *queries.spend_time_range(conn, where))
    return _lines(session, spend_queries.ledger_cells(conn, caps, where, by, period, offsets, options.timezone or "UTC"), by)


def _lines(session, cells: list, by: str) -> tuple[dict, dict[str, int]]:
    """Cells of `by` merged into spend lines, each entity with its alias, keys redacted."""
    from auditor.audit import spend
    from auditor.litellm.resolver import Resolver
    from auditor.redact import Redactor

    keys = [row.token for row in session.key_rows] + ([c.entity[0] for c in cells] if by == "key" else [])
    catalogue = session.catalogue
    return spend.merge(
        cells,
        by,
        Resolver(catalogue),
        catalogue.alias_target,
        _aliases(session.conn, session.caps, session.key_rows, by),
        Redactor(keys),
    )


def _aliases(conn, caps, key_rows, by: str) -> dict[str, str | None]:
    """Each entity's alias (key alias, team alias, user alias or email, ...), keyed as spend.entity_label names it."""
    from auditor.ledger import budget_holders, queries

    if by == "tag":
        return {}
    if by == "key":
        return {row.token: f"{row.key_alias or row.token[:12]} (deleted)" if row.deleted else row.key_alias for row in key_rows}
    found = {}
    for holder in budget_holders.holders(conn, caps, key_rows):
        if holder.scope == by:
            entity = holder.entity_id
            found[queries.team_member_entity_id(*entity) if isinstance(entity, tuple) else entity] = holder.alias
    return found
