#!/usr/bin/env python3
"""The budgeted keys' charge stream two ways (issue 14's experiment): the order the scan asks for today, and an
index range scan with a reorder buffer.

    python benchmarks/stream_order.py --db postgresql://postgres@127.0.0.1:5432/auditor_bench

The scan replays each budgeted key's charged rows in ("endTime", request_id) order (queries.stream_charges):
PostgreSQL reads them with a bitmap heap scan on the api_key index and sorts them on disk. LiteLLM's own
(api_key, "startTime") index already hands a key's rows back in "startTime" order; a request ends after it
starts, so a row can be released once a later row has started after it ended, and a small heap keyed by
"endTime" puts the rows in charge order. This times both through a server-side cursor (5,000 rows a fetch,
as the scan fetches), with the rows' narrow columns and the scan's charged-row test simplified to status and
key, and prints the reorder buffer's peak: its memory. Run twice each; the second (warm) runs are the figures.
"""

from __future__ import annotations

import argparse
import heapq
import time

import psycopg

COLUMNS = 'api_key, request_id, "startTime", "endTime", spend, model, model_group, model_id'
CHARGED = "api_key = ANY(%s) AND status IS DISTINCT FROM 'failure'"
TODAY = f'SELECT {COLUMNS} FROM "LiteLLM_SpendLogs" WHERE {CHARGED} ORDER BY api_key, "endTime", request_id'
BY_INDEX = f'SELECT {COLUMNS} FROM "LiteLLM_SpendLogs" WHERE {CHARGED} ORDER BY api_key, "startTime"'
INDEX_ONLY = ("SET LOCAL enable_bitmapscan = off", "SET LOCAL enable_sort = off", "SET LOCAL enable_seqscan = off")


def budgeted_keys(conn: psycopg.Connection) -> list[str]:
    return [
        token
        for (token,) in conn.execute(
            """SELECT token FROM "LiteLLM_VerificationToken"
               WHERE model_max_budget IS NOT NULL AND model_max_budget::text NOT IN ('{}', 'null') ORDER BY token"""
        )
    ]


def stream(conn: psycopg.Connection, sql: str, keys: list[str], settings=(), reorder: bool = False) -> tuple[int, float, int]:
    """(rows, seconds, reorder buffer peak): every row fetched, and with `reorder` released in charge order."""
    with conn.transaction():
        for setting in settings:
            conn.execute(setting)
        started, rows, peak = time.perf_counter(), 0, 0
        buffer: list[tuple] = []
        with conn.cursor(name="stream") as cursor:
            cursor.itersize = 5000
            cursor.execute(sql, (keys,))
            key = None
            for row in cursor:
                rows += 1
                if not reorder:
                    continue
                if row[0] != key:  # a new key: the last one's rows all go
                    buffer, key = [], row[0]
                while buffer and buffer[0][0] < row[2]:  # ended before this row started: no later row ends before it
                    heapq.heappop(buffer)
                heapq.heappush(buffer, (row[3], row[1]))
                peak = max(peak, len(buffer))
        return rows, time.perf_counter() - started, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    with psycopg.connect(args.db, autocommit=True) as conn:
        keys = budgeted_keys(conn)
        print(f"{len(keys)} keys with per-model budgets")
        for run in (1, 2):
            rows, seconds, _ = stream(conn, TODAY, keys)
            print(f"run {run}: today's order (bitmap heap scan, sort by key, endTime): {rows:,} rows in {seconds:.2f} s")
            rows, seconds, peak = stream(conn, BY_INDEX, keys, INDEX_ONLY, reorder=True)
            print(
                f"run {run}: (api_key, startTime) index range scan + reorder buffer: {rows:,} rows in {seconds:.2f} s, "
                f"buffer peak {peak} rows"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
