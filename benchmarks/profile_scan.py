#!/usr/bin/env python3
"""Where `auditor scan`'s time goes: per phase, per query plan, per Python function.

    python benchmarks/profile_scan.py --db postgresql://postgres@127.0.0.1:5432/auditor_bench --config benchmarks/config.yaml

Runs `auditor scan --format json` in this process (through auditor.cli.main's Typer app, so it
follows whatever the command does today) without changing auditor: every function of
auditor.ledger.queries that takes a connection is wrapped to time it (generators: time spent inside
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
    parser.add_argument(
        "--cprofile", type=int, default=0, metavar="N", help="print the N top Python functions by cumulative time"
    )
    parser.add_argument("--no-explain", action="store_true", help="do not load auto_explain")
    parser.add_argument("--output", help="keep the scan's JSON here (default: a temporary file, deleted)")
    parser.add_argument(
        "--what-if-raw-charges",
        action="store_true",
        help="experiment: run queries.stream_charges's own statement through psycopg's server-side "
        "cursor with namedtuple rows instead of SQLAlchemy's Result/Row (auditor's code otherwise unchanged)",
    )
    parser.add_argument(
        "--explain-min-ms", type=int, default=200, help="print plans of statements that ran at least this long (default 200)"
    )
    args = parser.parse_args(argv)

    import inspect

    from auditor.cli.main import app
    from auditor.ledger import budget_holders, daily_rollups, queries

    notices: list[str] = []

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        if not args.no_explain:
            with dbapi_connection.cursor() as cur:
                cur.execute("LOAD 'auto_explain'")
                for name, value in (
                    ("log_min_duration", str(args.explain_min_ms)),
                    ("log_analyze", "on"),
                    ("log_buffers", "on"),
                    ("log_timing", "on"),
                    ("log_level", "notice"),
                    ("log_format", "text"),
                ):
                    cur.execute(f"SET auto_explain.{name} = '{value}'")
            dbapi_connection.commit()

    timings: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(name: str, seconds: float, rows: int | None = None) -> None:
        timings[name] = timings.get(name, 0.0) + seconds
        if rows is not None:
            counts[name] = counts.get(name, 0) + rows

    def wrap_function(name, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            result = fn(*a, **k)
            add(name, time.perf_counter() - t0, len(result) if hasattr(result, "__len__") else None)
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
            add(f"{name}: inside the generator (server, driver, row objects)", inside, rows)
            add(f"{name}: whole loop incl. the consumer (resolve, windows, ledger)", time.perf_counter() - t0)

        return timed

    if args.what_if_raw_charges:
        queries.stream_charges = wrap_generator("queries.stream_charges [what-if: psycopg cursor]", raw_stream_charges(queries))

    for module in (queries, budget_holders, daily_rollups):  # every read of LiteLLM's tables the scan makes
        label = module.__name__.rsplit(".", 1)[-1]
        for name, fn in list(vars(module).items()):
            if inspect.isfunction(fn) and fn.__module__ == module.__name__ and "conn" in inspect.signature(fn).parameters:
                wrap = wrap_generator if inspect.isgeneratorfunction(fn) else wrap_function
                setattr(module, name, wrap(f"{label}.{name}", fn))

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


def raw_stream_charges(queries):
    """queries.stream_charges, unchanged, but its statement runs on psycopg's own named cursor.

    The function gets a connection proxy whose execute() compiles the statement it is given and runs it
    through a server-side psycopg cursor with namedtuple rows, so the rows skip SQLAlchemy's Result/Row
    layer; everything else (the query, the repeat-poll filter, ChargeRow) is auditor's own code.
    """
    from psycopg.rows import namedtuple_row

    original = queries.stream_charges

    class RawCursorConnection:
        def __init__(self, conn):
            self._conn = conn

        def execute(self, statement, *args, **kwargs):
            compiled = statement.compile(dialect=self._conn.dialect, compile_kwargs={"render_postcompile": True})
            cursor = self._conn.connection.driver_connection.cursor(name="auditor_charges_raw", row_factory=namedtuple_row)
            cursor.itersize = 5000
            cursor.execute(str(compiled), compiled.params)
            return cursor

        def __getattr__(self, name):
            return getattr(self._conn, name)

    def stream_charges(conn, *args, **kwargs):
        if conn.dialect.name != "postgresql":
            return original(conn, *args, **kwargs)
        return original(RawCursorConnection(conn), *args, **kwargs)

    return stream_charges


if __name__ == "__main__":
    sys.exit(main())
