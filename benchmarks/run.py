#!/usr/bin/env python3
"""Time `auditor scan` against the floor: the one GROUP BY any spend audit has to pay for.

    python benchmarks/run.py --db postgresql://postgres@127.0.0.1:5432/auditor_bench --config benchmarks/config.yaml

On the same database, in the same run:

1. the floor query, twice; the second (warm cache) run is the one reported:
       SELECT api_key, model, model_group, model_id, SUM(spend), COUNT(*)
       FROM "LiteLLM_SpendLogs" GROUP BY 1, 2, 3, 4
2. `auditor scan --format json --fail-on never --now <max "endTime">` as a subprocess (the
   `auditor` next to this Python, else `python -m auditor`), its output to a temporary file;
   wall time, and peak RSS from os.wait4's rusage of that one child (ru_maxrss, KiB on Linux).

Prints the wall times, scan/floor, peak RSS in MB (MiB), rows read (from the scan's JSON) and
whether the targets (scan <= 2x floor, peak RSS <= 300 MB) are met; `--json` also writes them as
JSON. `--repeat N` runs the scan N times, each followed by one more floor run, and judges the
medians instead (the floor of a 13 GB heap on a 2-core box varies by +-30% run to run with the page
cache). Exit 0 when both targets are met, 1 when not, 2 when something failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
FLOOR_SQL = 'SELECT api_key, model, model_group, model_id, SUM(spend), COUNT(*) FROM "LiteLLM_SpendLogs" GROUP BY 1, 2, 3, 4'
TARGET_RATIO = 2.0
TARGET_RSS_MB = 300.0


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://").replace("postgres://", "postgresql://")


def floor_query(url: str) -> tuple[float, int]:
    """One run of the floor on a fresh connection: (wall seconds, groups), every row fetched."""
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        rows = conn.execute(FLOOR_SQL).fetchall()
        return time.perf_counter() - t0, len(rows)


def auditor_command() -> list[str]:
    sibling = Path(sys.executable).with_name("auditor")
    if sibling.exists():
        return [str(sibling)]
    found = shutil.which("auditor")
    return [found] if found else [sys.executable, "-m", "auditor"]


def run_scan(db: str, config: str | None, now: str, extra: list[str]) -> dict:
    """auditor scan as a child; wall time and that child's own peak RSS (os.wait4)."""
    with tempfile.TemporaryDirectory(prefix="auditor-bench-") as tmp:
        out_path = Path(tmp) / "scan.json"
        command = auditor_command() + ["scan", "--db", db, "--format", "json", "--fail-on", "never", "--now", now]
        if config:
            command += ["--config", config]
        command += extra
        with open(out_path, "wb") as out, open(Path(tmp) / "stderr", "wb") as err:
            t0 = time.perf_counter()
            child = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - t0
            child.returncode = os.waitstatus_to_exitcode(status)
        stderr = (Path(tmp) / "stderr").read_text(errors="replace")
        if child.returncode != 0:
            raise SystemExit(f"auditor scan exited {child.returncode}:\n{stderr}")
        size = out_path.stat().st_size
        with open(out_path, encoding="utf-8") as f:
            result = json.load(f)
    return {
        "command": command,
        "wall_s": wall,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # ru_maxrss is KiB on Linux
        "output_bytes": size,
        "rows": result["rows"],
        "findings": len(result["findings"]),
        "windows": len(result["spend"]),
        "stderr": stderr.strip(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--db", required=True, help="postgresql://USER@HOST:PORT/DB filled by benchmarks/generate.py")
    parser.add_argument("--config", default=str(HERE / "config.yaml"), help="proxy config (default benchmarks/config.yaml)")
    parser.add_argument("--json", metavar="PATH", help="also write the measurements to PATH as JSON")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run the scan N times, each followed by another floor run, and also report medians (default 1)")
    parser.add_argument("scan_args", nargs="*", help="extra arguments for auditor scan, after --")
    args = parser.parse_args(argv)
    url = libpq_url(args.db)

    with psycopg.connect(url) as conn:
        max_end = conn.execute('SELECT max("endTime") FROM "LiteLLM_SpendLogs"').fetchone()[0]
        info = conn.execute(
            "SELECT reltuples::bigint, pg_relation_size(oid), pg_total_relation_size(oid) FROM pg_class "
            "WHERE oid = to_regclass('\"LiteLLM_SpendLogs\"')").fetchone()
        settings = dict(conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
            "('shared_buffers', 'work_mem', 'max_parallel_workers_per_gather', 'effective_cache_size', 'jit')").fetchall())
        server = conn.execute("SHOW server_version").fetchone()[0]
    if max_end is None:
        print("LiteLLM_SpendLogs is empty: run benchmarks/generate.py first", file=sys.stderr)
        return 2
    now = max_end.isoformat(timespec="milliseconds")
    print(f"database: {args.db}  (LiteLLM_SpendLogs ~{info[0]:,} rows, heap {info[1] / 2**30:.1f} GiB, "
          f"with TOAST and indexes {info[2] / 2**30:.1f} GiB)")
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL {server}, "
          + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())))

    cold, groups = floor_query(url)
    print(f"floor, run 1 (cold or partly cached): {cold:.2f} s, {groups:,} groups")
    floor, groups = floor_query(url)
    print(f"floor, run 2 (warm cache, reported):  {floor:.2f} s")

    scan = run_scan(args.db, args.config, now, args.scan_args)
    rows = scan["rows"]
    ratio = scan["wall_s"] / floor
    print(f"scan: {scan['wall_s']:.2f} s wall ({scan['user_s']:.2f} s user, {scan['sys_s']:.2f} s sys in auditor), "
          f"peak RSS {scan['peak_rss_mb']:.1f} MB")
    print(f"scan rows: read {rows['read']:,}, attributed {rows['attributed']:,}, unresolved {rows['unresolved']:,}, "
          f"ignored {rows['ignored']:,} {rows['ignored_by_reason']}; {scan['findings']:,} findings, "
          f"{scan['windows']:,} windows, {scan['output_bytes'] / 1e6:.1f} MB of JSON")
    print(f"command: {' '.join(scan['command'])}")
    scans, floors = [scan], [floor]
    for i in range(1, args.repeat):
        again, _ = floor_query(url)
        floors.append(again)
        scans.append(run_scan(args.db, args.config, now, args.scan_args))
        print(f"repeat {i}: floor {again:.2f} s, scan {scans[-1]['wall_s']:.2f} s, peak RSS {scans[-1]['peak_rss_mb']:.1f} MB")
    if args.repeat > 1:
        after, _ = floor_query(url)
        floors.append(after)
        floor_med = statistics.median(floors)
        scan_med = statistics.median(s["wall_s"] for s in scans)
        print(f"medians over {args.repeat} scans and {len(floors)} warm floor runs: floor {floor_med:.2f} s "
              f"(range {min(floors):.2f}-{max(floors):.2f}), scan {scan_med:.2f} s "
              f"(range {min(s['wall_s'] for s in scans):.2f}-{max(s['wall_s'] for s in scans):.2f}), "
              f"ratio {scan_med / floor_med:.2f}")
        ratio = scan_med / floor_med
        scan = dict(scan, peak_rss_mb=max(s["peak_rss_mb"] for s in scans))
    ok_ratio, ok_rss = ratio <= TARGET_RATIO, scan["peak_rss_mb"] <= TARGET_RSS_MB
    print(f"scan / floor = {ratio:.2f} (target <= {TARGET_RATIO:g}: {'met' if ok_ratio else 'MISSED'}); "
          f"peak RSS {scan['peak_rss_mb']:.0f} MB (target <= {TARGET_RSS_MB:g}: {'met' if ok_rss else 'MISSED'})")
    if args.json:
        record = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": args.db, "rows_estimate": info[0], "heap_bytes": info[1], "total_bytes": info[2],
            "cores": os.cpu_count(), "postgresql": server, "settings": settings,
            "floor_cold_s": cold, "floor_warm_s": floor, "floor_groups": groups, "floor_warm_runs_s": floors,
            "scan_runs_s": [s["wall_s"] for s in scans],
            "scan": {k: v for k, v in scan.items() if k != "stderr"}, "ratio": ratio,
            "targets_met": ok_ratio and ok_rss,
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0 if ok_ratio and ok_rss else 1


if __name__ == "__main__":
    sys.exit(main())
