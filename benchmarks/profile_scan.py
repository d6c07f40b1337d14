#!/usr/bin/env python3
"""Where `auditor scan`'s time goes: per phase, per query plan, per Python function.

    python benchmarks/profile_scan.py --db postgresql://postgres@127.0.0.1:5432/auditor_bench --config benchmarks/config.yaml

Runs `auditor scan --format json` in this process (through auditor.cli's Typer app, so it
follows whatever the command does today) without changing auditor: every function of
auditor.queries that takes a connection is wrapped to time it (generators: time spent inside
the generator, i.e. server + driver + row objects, versus the whole loop including the consumer),
and every connection loads PostgreSQL's auto_explain (superuser only) with `log_level = notice`,
so the plans the server actually ran for statements over --explain-min-ms (200 ms) -- including the server-side
cursor's, which plain EXPLAIN cannot show -- come back as notices and are printed.
`--cprofile N` also prints the N most expensive Python functions (cProfile roughly doubles the
Python side's time; compare phases with and without it).
`--no-explain` skips auto_explain (its per-row timing costs a few percent).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import sys
import time
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--config", default=str(HERE / "config.yaml"))
    parser.add_argument("--now", help="as auditor scan --now (default: max endTime)")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N", help="print the N top Python functions by cumulative time")
    parser.add_argument("--no-explain", action="store_true", help="do not load auto_explain")
    parser.add_argument("--output", help="keep the scan's JSON here (default: a temporary file, deleted)")
    parser.add_argument("--what-if-hash-groups", action="store_true",
                        help="experiment: replace queries.spend_groups in this process by the rewrite recommended in "
                             "benchmarks/README.md (GROUP BY plain columns and boolean flags, hash aggregation)")
    parser.add_argument("--what-if-raw-charges", action="store_true",
                        help="experiment: replace queries.stream_charges in this process by the same query read "
                             "through psycopg's server-side cursor as plain tuples (no SQLAlchemy Row per charge)")
    parser.add_argument("--explain-min-ms", type=int, default=200, help="print plans of statements that ran at least this long (default 200)")
    args = parser.parse_args(argv)

    import inspect

    from auditor import queries
    from auditor.cli import app

    notices: list[str] = []

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        dbapi_connection.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        if not args.no_explain:
            with dbapi_connection.cursor() as cur:
                cur.execute("LOAD 'auto_explain'")
                for name, value in (("log_min_duration", str(args.explain_min_ms)), ("log_analyze", "on"), ("log_buffers", "on"),
                                    ("log_timing", "on"), ("log_level", "notice"), ("log_format", "text")):
                    cur.execute(f"SET auto_explain.{name} = '{value}'")
            dbapi_connection.commit()

    timings: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(name: str, seconds: float, rows: int | None = None) -> None:
        timings[name] = timings.get(name, 0.0) + seconds
        if rows is not None:
            counts[name] = counts.get(name, 0) + rows

    def wrap_function(name, fn):  # noqa: E306
        def timed(*a, **k):
            t0 = time.perf_counter()
            result = fn(*a, **k)
            add(f"queries.{name}", time.perf_counter() - t0, len(result) if hasattr(result, "__len__") else None)
            return result
        return timed

    def wrap_generator(name, fn):
        def timed(*a, **k):
            inside, rows, t0 = 0.0, 0, time.perf_counter()
            generator = fn(*a, **k)
            while True:
                t = time.perf_counter()
                try:
                    row = next(generator)
                except StopIteration:
                    inside += time.perf_counter() - t
                    break
                inside += time.perf_counter() - t
                rows += 1
                yield row
            add(f"queries.{name}: inside the generator (server, driver, row objects)", inside, rows)
            add(f"queries.{name}: whole loop incl. the consumer (resolve, windows, ledger)", time.perf_counter() - t0)
        return timed

    if args.what_if_hash_groups:
        queries.spend_groups = wrap_function("spend_groups [what-if: hash]", hash_spend_groups(queries))
    if args.what_if_raw_charges:
        queries.stream_charges = wrap_generator("stream_charges [what-if: raw cursor]", raw_stream_charges(queries))

    for name, fn in list(vars(queries).items()):
        if inspect.isfunction(fn) and fn.__module__ == queries.__name__ and "conn" in inspect.signature(fn).parameters:
            setattr(queries, name, (wrap_generator if inspect.isgeneratorfunction(fn) else wrap_function)(name, fn))

    now = args.now
    if now is None:
        import psycopg

        with psycopg.connect(args.db.replace("postgresql+psycopg://", "postgresql://")) as conn:
            now = conn.execute('SELECT max("endTime") FROM "LiteLLM_SpendLogs"').fetchone()[0].isoformat(timespec="milliseconds")
    import tempfile

    out = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="auditor-profile-")) / "scan.json"
    command = ["scan", "--db", args.db, "--format", "json", "--fail-on", "never", "--now", now, "--output", str(out)]
    if args.config:
        command += ["--config", args.config]
    profiler = cProfile.Profile() if args.cprofile else None
    t_all = time.perf_counter()
    if profiler:
        profiler.enable()
    try:
        app(command, standalone_mode=False)
    finally:
        if profiler:
            profiler.disable()
    timings["auditor scan in-process (excluding interpreter start)"] = time.perf_counter() - t_all
    import json

    result = json.loads(out.read_text())
    if not args.output:
        out.unlink()
    print(f"rows {result['rows']['read']:,} read; {len(result['findings']):,} findings; {len(result['spend']):,} windows")
    for name, seconds in timings.items():
        print(f"  {seconds:8.2f} s  {name}")
    for name, n in counts.items():
        print(f"  {n:>10,}  {name}")
    print(f"  peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    for notice in notices:
        if "duration:" in notice:
            print("\n" + notice)
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.cprofile)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.cprofile)
        print(out.getvalue())
    return 0


def hash_spend_groups(queries):
    """The spend_groups rewrite recommended in README.md, for measuring it without touching auditor.

    Same result as queries.spend_groups, but the GROUP BY holds only the key, the model triple and two
    boolean flags (failed; paid job poll), so PostgreSQL's group estimate is not "one group per row"
    (the CASE's `metadata` operand is unique per row) and no correlated subquery sits in the GROUP BY;
    sorting is disabled for this one statement so the aggregate is hashed (the real number of groups
    is tens of thousands). Paid job polls, if any, are re-read through the (api_key, "startTime") index
    with the original query, restricted to the keys that have them.
    """
    from sqlalchemy import and_, func, text

    from auditor.schema import spend_logs as t

    original = queries.spend_groups

    def spend_groups(conn, caps, where):
        if conn.dialect.name != "postgresql":
            return original(conn, caps, where)
        model, model_group, model_id = queries.model_triple(caps)
        key = func.coalesce(t.c.api_key, "")
        failed = queries._is_failure(caps)
        poll = and_(t.c.call_type.in_(queries.JOB_POLL_CALL_TYPES), t.c.spend > 0)
        query = (
            select_(key.label("api_key"), model.label("model"), model_group.label("model_group"), model_id.label("model_id"),
                    failed.label("failed"), poll.label("poll"), func.coalesce(func.sum(t.c.spend), 0.0).label("spend"),
                    func.count().label("requests"), func.min(t.c.startTime).label("first_start"),
                    func.max(t.c.startTime).label("last_start"))
            .where(*where.where())
            .group_by(key, model, model_group, model_id, failed, poll)
        )
        previous = conn.execute(text("SELECT current_setting('enable_sort')")).scalar_one()
        conn.execute(text("SET LOCAL enable_sort = off"))
        try:
            rows = conn.execute(query).all()
        finally:
            conn.execute(text(f"SET LOCAL enable_sort = {previous}"))
        merged: dict[tuple, list] = {}
        polled_keys: set[str] = set()

        def add(k, spend, requests, first, last):
            if k in merged:
                m = merged[k]
                m[0] += spend
                m[1] += requests
                m[2] = min(x for x in (m[2], first) if x is not None) if (m[2] or first) else None
                m[3] = max(x for x in (m[3], last) if x is not None) if (m[3] or last) else None
            else:
                merged[k] = [spend, requests, first, last]

        for r in rows:
            if r.failed:
                outcome = queries.IGNORED_FAILURE
            elif r.api_key == "":
                outcome = queries.IGNORED_NO_API_KEY
            elif r.poll:
                polled_keys.add(r.api_key)
                continue
            else:
                outcome = queries.CHARGED
            add((r.api_key, r.model, r.model_group, r.model_id, outcome), float(r.spend), int(r.requests), r.first_start, r.last_start)
        if polled_keys:
            narrowed = queries.SpendFilter(since=where.since, until=where.until, api_keys=tuple(sorted(polled_keys)), entity=where.entity)
            poll_groups = original_poll_groups(conn, caps, narrowed, queries)
            for g in poll_groups:
                add((g.api_key, g.model, g.model_group, g.model_id, g.outcome), g.spend, g.requests, g.first_start, g.last_start)
        return [queries.SpendGroup(k[0], k[1], k[2], k[3], k[4], float(v[0]), int(v[1]),
                                   queries._as_datetime(v[2]), queries._as_datetime(v[3])) for k, v in merged.items()]

    return spend_groups


def raw_stream_charges(queries):
    """queries.stream_charges's own query and rows, fetched as tuples from psycopg's named cursor."""
    from sqlalchemy import select, tuple_

    from auditor.schema import spend_logs

    original = queries.stream_charges

    def stream_charges(conn, caps, where, scope, entity_ids, batch=5000):
        if conn.dialect.name != "postgresql" or not entity_ids:
            yield from original(conn, caps, where, scope, entity_ids, batch)
            return
        columns = [spend_logs.c[name] for name in queries.SCOPE_COLUMNS[scope]]
        matches = columns[0].in_(list(entity_ids)) if len(columns) == 1 else tuple_(*columns).in_(list(entity_ids))
        model, model_group, model_id = queries.model_triple(caps)
        query = (
            select(*columns, spend_logs.c.request_id, spend_logs.c.api_key, spend_logs.c.startTime, spend_logs.c.endTime,
                   spend_logs.c.spend, model.label("model"), model_group.label("model_group"), model_id.label("model_id"))
            .where(*where.where(), matches, queries.row_outcome(caps) == queries.CHARGED)
            .order_by(*columns, spend_logs.c.endTime, spend_logs.c.startTime, spend_logs.c.request_id)
        )
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        n = len(columns)
        charge, member_id = queries.ChargeRow, queries.team_member_entity_id
        with conn.connection.driver_connection.cursor(name="auditor_charges") as cur:
            cur.itersize = batch
            cur.execute(str(compiled), compiled.params)
            for row in cur:
                entity = row[0] if n == 1 else member_id(row[0], row[1])
                yield charge(entity, row[n], row[n + 1], row[n + 2], row[n + 3], float(row[n + 4] or 0.0),
                             row[n + 5], row[n + 6], row[n + 7])

    return stream_charges


def original_poll_groups(conn, caps, where, queries):
    """The original grouped query over the paid job-poll rows of the given keys only (index on api_key)."""
    from sqlalchemy import func

    from auditor.schema import spend_logs as t

    model, model_group, model_id = queries.model_triple(caps)
    outcome = queries.row_outcome(caps)
    key = func.coalesce(t.c.api_key, "")
    query = (
        select_(key.label("api_key"), model.label("model"), model_group.label("model_group"), model_id.label("model_id"), outcome,
                func.coalesce(func.sum(t.c.spend), 0.0).label("spend"), func.count().label("requests"),
                func.min(t.c.startTime).label("first_start"), func.max(t.c.startTime).label("last_start"))
        .where(*where.where(), t.c.call_type.in_(queries.JOB_POLL_CALL_TYPES), t.c.spend > 0, ~queries._is_failure(caps))
        .group_by(key, model, model_group, model_id, outcome)
    )
    return [queries.SpendGroup(r.api_key, r.model, r.model_group, r.model_id, r.outcome, float(r.spend), int(r.requests),
                               queries._as_datetime(r.first_start), queries._as_datetime(r.last_start)) for r in conn.execute(query)]


def select_(*columns):
    from sqlalchemy import select

    return select(*columns)


if __name__ == "__main__":
    sys.exit(main())
