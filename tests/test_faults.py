"""Faults while auditor runs against production: the database connection killed mid-scan, Redis unreachable,
silent or stalling halfway, a statement timeout, a full disk. Each one is exit 3 and one line on stderr, with
nothing half-written: no partial JSON on stdout, no report or temp file left. `--redis-optional` turns a Redis
fault into a scan without Redis counters that says so (stderr, notes, every report format).

Real services only: PostgreSQL (pg_terminate_backend from the test), the real Redis behind a small TCP proxy
that stops forwarding at a chosen command, a socket server that never answers, and a real full filesystem
(a tmpfs mounted by the test: root and CAP_SYS_ADMIN, as in CI).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.ledger.db import parse_database_url
from auditor.session import MID_SCAN_HOOK_ENV

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CONFIG = str(REPO / "sample_data" / "config.yaml")
NOW = "2026-11-22T00:00:00Z"
STEM = "auditor-report-20261122T000000Z"
HOOK_LINE = "auditor: test hook: paused mid-scan"
IN_CI = bool(os.environ.get("CI"))

runner = CliRunner()


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env)


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def masked(url: str) -> str:
    return parse_database_url(url).render_as_string(hide_password=True)


@pytest.fixture
def pg_sample(pg_url) -> str:
    result = invoke("sample", "load", "--db", pg_url)
    assert result.exit_code == 0, result.output
    return pg_url


@pytest.fixture
def sqlite_sample(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'sample.sqlite'}"
    result = invoke("sample", "load", "--db", url)
    assert result.exit_code == 0, result.output
    return url


# ---------------------------------------------------------------------------------------------
# The database connection killed mid-scan


def _spawn(args: list[str]) -> subprocess.Popen:
    """The real CLI (python -m auditor, as the console script runs it), paused mid-stream by the test hook for 5 s:
    the test kills the backend within that pause (it needs well under a second), then the scan reads on."""
    env = {**os.environ, MID_SCAN_HOOK_ENV: "5"}
    return subprocess.Popen(
        [sys.executable, "-m", "auditor", *args], cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _wait_for_pause(proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if line.strip() == HOOK_LINE:
            return
    proc.kill()
    raise AssertionError(f"the scan never paused: {''.join(seen)}")


def _terminate(url: str) -> int:
    """pg_terminate_backend on the scan's connection, found by the application_name auditor sets."""
    database = make_url(url).database
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND application_name = 'auditor' AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            ).scalar()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_connection_killed_mid_scan_is_exit_3_one_line_and_no_json(pg_sample):
    proc = _spawn(["scan", "--db", pg_sample, "--config", SAMPLE_CONFIG, "--now", NOW, "--format", "json"])
    _wait_for_pause(proc)
    assert _terminate(pg_sample) == 1  # exactly the scan's backend, mid-stream with its cursor open
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert stdout == ""  # not a byte of JSON: the result is printed only once the scan is whole
    assert stderr.splitlines() == [
        f"auditor: lost the connection to {masked(pg_sample)}: terminating connection due to administrator command"
    ]


@pytest.mark.postgres
def test_a_connection_killed_mid_report_writes_no_file_and_records_the_run_failed(pg_sample, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    for fmt in ("json", "md", "html"):  # the previous night's report must survive untouched
        (out / f"latest.{fmt}").write_text(f"previous {fmt}\n")
    history_db = f"sqlite:///{tmp_path / 'history.sqlite'}"
    proc = _spawn(
        ["report", "--db", pg_sample, "--config", SAMPLE_CONFIG, "--now", NOW, "--out", str(out), "--history-db", history_db]
    )
    _wait_for_pause(proc)
    assert _terminate(pg_sample) == 1
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert stdout == ""
    line = f"auditor: lost the connection to {masked(pg_sample)}: terminating connection due to administrator command"
    assert stderr.splitlines() == [line]
    assert files_in(out) == {"latest.json", "latest.md", "latest.html"}  # no dated file, no temp file
    assert all((out / f"latest.{fmt}").read_text() == f"previous {fmt}\n" for fmt in ("json", "md", "html"))
    runs = json.loads(invoke("history", "--history-db", history_db, "--format", "json").stdout)
    assert [(r["status"], r["message"]) for r in runs] == [("failed", line.removeprefix("auditor: "))]


# ---------------------------------------------------------------------------------------------
# Redis: unreachable, silent, stalling halfway


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SilentServer:
    """Accepts connections and never answers: a hung Redis, or a firewall that swallows packets."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class StallingProxy:
    """Forwards to the real Redis until the client sends `stall_at` (a command name), then forwards nothing more
    in either direction: a Redis that answered PING and then stopped answering mid-scan."""

    def __init__(self, upstream_host: str, upstream_port: int, stall_at: bytes) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.stall_at, self.stalled = stall_at, threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream, timeout=10)
            self.open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            if from_client and self.stall_at in data.upper():
                self.stalled.set()
            if self.stalled.is_set():
                continue  # swallowed: the client waits for an answer that never comes
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.open:
            conn.close()


@pytest.fixture
def redis_at(redis_client) -> tuple[str, int, int]:
    """Host, port and db of the test's own Redis db (conftest's redis_client flushes it)."""
    kwargs = redis_client.connection_pool.connection_kwargs
    return kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379), kwargs.get("db", 0)


@pytest.fixture
def faulty_redis(redis_at):
    """URLs of a Redis that fails in each way, with a 0.5 s timeout, and the line each failure prints."""
    made: list = []

    def make(kind: str) -> tuple[str, str]:
        query = "?socket_timeout=0.5&socket_connect_timeout=0.5"
        if kind == "unreachable":
            port = _closed_port()
            url = f"redis://127.0.0.1:{port}/0{query}"
            return (
                url,
                f"auditor: cannot reach Redis at {url} (--redis): Error 111 connecting to 127.0.0.1:{port}. Connection refused.",
            )
        if kind == "silent":
            server = SilentServer()
            made.append(server)
            url = f"redis://127.0.0.1:{server.port}/0{query}"
            return url, f"auditor: cannot reach Redis at {url} (--redis): Timeout reading from socket"
        host, port, db = redis_at
        proxy = StallingProxy(host, port, b"SCAN")
        made.append(proxy)
        url = f"redis://127.0.0.1:{proxy.port}/{db}{query}"
        return url, f"auditor: lost Redis at {url} (--redis) while reading counters: Timeout reading from socket"

    yield make
    for thing in made:
        thing.close()


KINDS = ["unreachable", "silent", "stalls after PING"]


@pytest.mark.parametrize("kind", KINDS)
def test_redis_that_fails_is_exit_3_one_line_when_asked_for(kind, faulty_redis, sqlite_sample):
    url, line = faulty_redis(kind)
    started = time.monotonic()
    result = invoke("scan", "--db", sqlite_sample, "--config", SAMPLE_CONFIG, "--now", NOW, "--format", "json", "--redis", url)
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [line]
    assert time.monotonic() - started < 10  # the URL's 0.5 s timeout bounds it: never a hang


@pytest.mark.parametrize("kind", KINDS)
def test_redis_optional_scans_without_redis_and_says_so(kind, faulty_redis, sqlite_sample):
    url, line = faulty_redis(kind)
    base = ["scan", "--db", sqlite_sample, "--config", SAMPLE_CONFIG, "--now", NOW, "--format", "json", "--fail-on", "never"]
    without = invoke(*base)
    degraded = invoke(*base, "--redis", url, "--redis-optional")
    assert degraded.exit_code == 0, degraded.stderr
    problem = line.removeprefix("auditor: ")
    assert degraded.stderr.splitlines() == [f"auditor: warning: {problem}; scanning without Redis counters (--redis-optional)"]
    record, reference = json.loads(degraded.stdout), json.loads(without.stdout)
    assert record["notes"][0] == (
        f"DEGRADED (--redis-optional): Redis counters were not read ({problem}); no Redis counter was compared, "
        "and where enforcement reads is judged from the database alone"
    )
    assert record["source"]["redis"] == url
    # Otherwise exactly the scan without Redis: nothing half-read from it reached the findings
    assert {**record, "notes": record["notes"][1:], "source": {**record["source"], "redis": None}} == reference


def test_a_degraded_scan_says_so_in_the_table_and_every_report_file(faulty_redis, sqlite_sample, tmp_path):
    url, _ = faulty_redis("unreachable")
    table = invoke(
        "scan",
        "--db",
        sqlite_sample,
        "--config",
        SAMPLE_CONFIG,
        "--now",
        NOW,
        "--redis",
        url,
        "--redis-optional",
        env={"COLUMNS": "400"},
    )
    assert table.exit_code == 1  # the sample's findings, as without Redis
    assert "note: DEGRADED (--redis-optional): Redis counters were not read (cannot reach Redis at" in table.stdout
    out = tmp_path / "r"
    report = invoke(
        "report",
        "--db",
        sqlite_sample,
        "--config",
        SAMPLE_CONFIG,
        "--now",
        NOW,
        "--out",
        str(out),
        "--redis",
        url,
        "--redis-optional",
        "--history-db",
        f"sqlite:///{tmp_path / 'h.sqlite'}",
        "--quiet",
    )
    assert report.exit_code == 1, report.stderr
    assert len(report.stderr.splitlines()) == 1 and report.stderr.startswith("auditor: warning: cannot reach Redis at ")
    assert json.loads((out / "latest.json").read_text())["notes"][0].startswith("DEGRADED (--redis-optional): ")
    assert "\n> DEGRADED \\(--redis-optional\\): Redis counters were not read " in (out / "latest.md").read_text()
    assert "<li>DEGRADED (--redis-optional): Redis counters were not read (" in (out / "latest.html").read_text()


def test_a_redis_that_answers_is_read_through_the_proxy(redis_at, sqlite_sample):
    """The stalling proxy's control: with nothing to stall at, the scan reads the sample's counters through it."""
    host, port, db = redis_at
    real = f"redis://{host}:{port}/{db}"
    assert (
        invoke(
            "sample", "load", "--db", f"sqlite:///{Path(sqlite_sample[10:]).parent / 'other.sqlite'}", "--redis", real
        ).exit_code
        == 0
    )
    proxy = StallingProxy(host, port, b"NEVER-SENT")
    try:
        base = ["scan", "--db", sqlite_sample, "--config", SAMPLE_CONFIG, "--now", NOW, "--format", "json", "--fail-on", "never"]
        direct = json.loads(invoke(*base, "--redis", real).stdout)
        proxied = invoke(*base, "--redis", f"redis://127.0.0.1:{proxy.port}/{db}?socket_timeout=0.5")
    finally:
        proxy.close()
    assert proxied.exit_code == 0 and proxied.stderr == ""
    record = json.loads(proxied.stdout)
    assert sum(1 for f in record["findings"] if f["counter_source"] == "redis") > 0
    assert record["findings"] == direct["findings"]


# ---------------------------------------------------------------------------------------------
# statement_timeout


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["scan", "report", "backfill"])
def test_a_statement_timeout_is_one_line_naming_the_option(command, pg_sample, tmp_path):
    # Another session holds an exclusive lock on the spend logs: the first read of them waits past 0.5 s.
    out = tmp_path / "r"
    extra = {
        "scan": ["--format", "json"],
        "report": ["--out", str(out), "--history-db", f"sqlite:///{tmp_path / 'h.sqlite'}"],
        "backfill": ["--format", "json"],
    }[command]
    engine = create_engine(pg_sample.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as holder:
            holder.execute(text('LOCK TABLE "LiteLLM_SpendLogs" IN ACCESS EXCLUSIVE MODE'))
            result = invoke(
                command, "--db", pg_sample, "--config", SAMPLE_CONFIG, "--now", NOW, "--statement-timeout", "0.5", *extra
            )
            holder.rollback()
    finally:
        engine.dispose()
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"auditor: a query on {masked(pg_sample)} hit the statement timeout: raise --statement-timeout or narrow with --since"
    ]
    if command == "report":
        assert files_in(out) == set()


# ---------------------------------------------------------------------------------------------
# A full disk, an unwritable --out / --output


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a real tmpfs of the size asked for; unmounted after the test."""
    mounted: list[Path] = []

    def mount(kib: int) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0700", "tmpfs", str(where)], capture_output=True, text=True
        )
        if done.returncode != 0:
            message = f"cannot mount a tmpfs (needs root and CAP_SYS_ADMIN): {done.stderr.strip()}"
            if IN_CI:
                pytest.fail(message + "; CI runs as root", pytrace=False)
            pytest.skip(message)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _pages(n: int) -> int:
    return -(-n // 4096)


def test_a_disk_that_fills_mid_report_leaves_no_dated_file_and_keeps_latest(sqlite_sample, tmp_path, tmpfs):
    # The same report into a roomy directory first, for its files' sizes; then a tmpfs that holds the previous
    # latest.* files and this run's JSON and Markdown, but not its HTML (written last).
    roomy = tmp_path / "roomy"
    args = ["report", "--db", sqlite_sample, "--config", SAMPLE_CONFIG, "--now", NOW, "--quiet"]
    assert invoke(*args, "--out", str(roomy), "--history-db", f"sqlite:///{tmp_path / 'h1.sqlite'}").exit_code == 1
    size = {fmt: (roomy / f"{STEM}.{fmt}").stat().st_size for fmt in ("json", "md", "html")}
    kib = 4 * (3 + _pages(size["json"] + 2048) + _pages(size["md"] + 2048) + _pages(size["html"]) // 2)
    out = tmpfs(kib)
    for fmt in ("json", "md", "html"):
        (out / f"latest.{fmt}").write_text(f"previous {fmt}\n")
    result = invoke(*args, "--out", str(out), "--history-db", f"sqlite:///{tmp_path / 'h2.sqlite'}")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"auditor: cannot write {out / f'{STEM}.html'}: No space left on device"]
    assert files_in(out) == {"latest.json", "latest.md", "latest.html"}  # the JSON and Markdown written were removed
    assert all((out / f"latest.{fmt}").read_text() == f"previous {fmt}\n" for fmt in ("json", "md", "html"))


def test_scan_output_to_a_full_disk_keeps_the_old_file_and_no_temp(sqlite_sample, tmpfs):
    disk = tmpfs(64)
    target = disk / "scan.json"
    target.write_text("yesterday's scan\n")
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # every free block
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as full:
        assert full.strerror == "No space left on device"
    finally:
        os.close(fd)
    result = invoke(
        "scan", "--db", sqlite_sample, "--config", SAMPLE_CONFIG, "--now", NOW, "--format", "json", "--output", str(target)
    )
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"auditor: cannot write {target}: No space left on device"]
    assert target.read_text() == "yesterday's scan\n"
    assert files_in(disk) == {"scan.json", "filler"}


def test_scan_output_to_dev_full_is_written_in_place_and_fails_cleanly(sqlite_sample):
    """A device is written in place (renaming over it as root would replace it): /dev/full is a real ENOSPC."""
    before = os.stat("/dev/full")
    result = invoke(
        "scan", "--db", sqlite_sample, "--config", SAMPLE_CONFIG, "--now", NOW, "--format", "json", "--output", "/dev/full"
    )
    assert result.exit_code == 3
    assert result.stderr.splitlines() == ["auditor: cannot write /dev/full: No space left on device"]
    after = os.stat("/dev/full")
    assert (after.st_ino, after.st_rdev, after.st_mode) == (before.st_ino, before.st_rdev, before.st_mode)
    assert not [p for p in os.listdir("/dev") if p.startswith(".full.")]


@pytest.mark.parametrize("where", ["below a file", "a directory"])
def test_scan_output_that_cannot_be_written_is_exit_3_one_line(where, sqlite_sample, tmp_path):
    # Tests run as root, whom a read-only mode does not stop: a path below a regular file, or a directory, does.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file\n")
    target, reason = (blocker / "scan.json", "Not a directory") if where == "below a file" else (tmp_path, "Is a directory")
    result = invoke(
        "scan", "--db", sqlite_sample, "--config", SAMPLE_CONFIG, "--now", NOW, "--format", "json", "--output", str(target)
    )
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"auditor: cannot write {target}: {reason}"]
    assert blocker.read_text() == "a file\n"
    assert files_in(tmp_path) == {"blocker", "sample.sqlite"}


def test_a_mistyped_sqlite_path_is_exit_3_and_creates_nothing(tmp_path):
    missing = tmp_path / "litellm.sqlite"
    result = invoke("scan", "--db", f"sqlite:///{missing}", "--format", "json")
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [f"auditor: no SQLite database at {missing} (--db): check the path"]
    assert not missing.exists()


def test_the_mid_scan_hook_is_inert_unless_its_variable_is_set(monkeypatch):
    """A normal run never pauses or prints: without the variable the progress callback is passed through as is."""
    from auditor.session import _mid_scan_hook

    monkeypatch.delenv(MID_SCAN_HOOK_ENV, raising=False)
    calls: list[int] = []
    advance = calls.append
    assert _mid_scan_hook(advance) is advance and _mid_scan_hook(None) is None
