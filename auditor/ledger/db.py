"""Where the database is, how to connect to it, and read-only transactions.

This module only connects and opens transactions; queries live in `auditor.ledger.queries`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from auditor.errors import InputError, UnavailableError

EMBEDDED = "embedded sample"


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """The database a command will read, and which setting chose it (shown by doctor)."""

    url: URL
    origin: str  # "--db", "AUDITOR_DATABASE_URL", "DATABASE_URL" or EMBEDDED

    @property
    def masked(self) -> str:
        return mask_url(self.url)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()


def parse_database_url(raw: str) -> URL:
    """Accept what LiteLLM users have: postgres://, postgresql://, sqlite:///path; always psycopg 3."""
    raw = raw.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    _check_userinfo(raw)
    try:
        url = make_url(raw)
    except ArgumentError:
        raise InputError(
            f"database URL {mask_text(raw)!r} does not parse: use postgresql://USER@HOST:PORT/DB or sqlite:///PATH"
        ) from None
    except ValueError:  # a port that is not a number: most often a password's ':' or '@' read as the host's
        raise _unencoded(raw) from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url
    raise InputError(f"unsupported database {backend!r}: auditor reads PostgreSQL (LiteLLM's database) or SQLite")


def _check_userinfo(raw: str) -> None:
    """A password with a raw '@', ':' or '/' makes the URL parse into another host (and the rest of the password
    into the host name, which error messages would then print): refuse it and say how to encode it."""
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.startswith("sqlite"):
        return
    authority, _, path = rest.partition("/")
    if authority.count("@") > 1 or "@" in path.partition("?")[0]:
        raise _unencoded(raw)


def _unencoded(raw: str) -> InputError:
    scheme = raw.partition("://")[0]
    return InputError(
        f"the {scheme}:// database URL does not parse as USER:PASSWORD@HOST:PORT/DB; if the password holds '@', ':' or '/', "
        "percent-encode them (@ as %40, : as %3A, / as %2F), e.g. with "
        "python3 -c 'import getpass, urllib.parse; print(urllib.parse.quote(getpass.getpass(), safe=\"\"))'"
    )


def database_from(explicit: str | None, environ: Mapping[str, str] = os.environ) -> DatabaseTarget | None:
    """--db, else AUDITOR_DATABASE_URL, else LiteLLM's own DATABASE_URL; None means the embedded sample."""
    for origin, value in (("--db", explicit), *((name, environ.get(name)) for name in ("AUDITOR_DATABASE_URL", "DATABASE_URL"))):
        if value:
            return DatabaseTarget(parse_database_url(value), origin)
    return None


def mask_url(url: URL | str) -> str:
    if isinstance(url, str):
        return mask_text(url)
    return url.render_as_string(hide_password=True)


_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]*)@", re.IGNORECASE)


def mask_text(message: str, secrets: tuple[str, ...] = ()) -> str:
    """Hide passwords in URLs, and any known secret verbatim, before a message reaches the user."""
    masked = _URL_PASSWORD.sub(lambda m: f"{m['head']}***@", message)
    for secret in secrets:
        if secret:
            masked = masked.replace(secret, "***")
    return masked


def json_or_text(document: str | bytes) -> object:
    """A JSON column's value, or its text undecoded when Python refuses it (an integer of more than 4300 digits,
    nesting past the recursion limit): jsonb holds such values, and one of them must not kill the whole scan.
    The budget parser reads the text and says what is wrong with it (budgets._whole_value_reason)."""
    try:
        return json.loads(document)
    except (ValueError, RecursionError):
        return document if isinstance(document, str) else bytes(document).decode("utf-8", "replace")


def json_value(value: object) -> object:
    """A JSON column as read on either database: SQLite may hand back its text, PostgreSQL the decoded value."""
    return json_or_text(value) if isinstance(value, str) else value


SCAN, BACKFILL, REPORT = "scan", "backfill", "report"  # what an engine is for (engine_for)


def engine_for(target: DatabaseTarget, purpose: str = SCAN) -> Engine:
    """The one way auditor builds an engine, by what it is for:

    - SCAN (scan, doctor, resolve, sample load): the default pool; reads run in one READ ONLY transaction (connect).
    - BACKFILL (backfill, undo, history, db upgrade): a pool of at most two connections reused from one transaction
      to the next (a connection per journal row made a run of thousands of counters crawl); a connection that died
      is dropped (pre-ping, and invalidation on a disconnect error), never reused; never waits on the proxy's row
      locks for more than 10 s.
    - REPORT (the report history): no pool, a connection per short transaction.
    """
    # json_deserializer: SQLAlchemy calls it for SQLite's JSON text, and registers it as psycopg 3's json/jsonb
    # loader on this engine's own adapters map (psycopg parses jsonb itself; the loader gets bytes), never globally.
    options: dict = {"json_deserializer": json_or_text}
    if purpose == BACKFILL:
        options.update(pool_size=1, max_overflow=1, pool_pre_ping=True)
    elif purpose == REPORT:
        from sqlalchemy.pool import NullPool

        options["poolclass"] = NullPool
    if target.dialect == "postgresql":
        connect_args = {"connect_timeout": 10, "application_name": "auditor" if purpose == SCAN else f"auditor {purpose}"}
        if purpose == BACKFILL:
            connect_args["options"] = "-c lock_timeout=10000"
        return log_sql(create_engine(target.url, connect_args=connect_args, **options))
    engine = log_sql(create_engine(target.url, **options))

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
        dbapi_connection.execute("PRAGMA foreign_keys=OFF")

    return engine


SQL_LOG = logging.getLogger("auditor.sql")
_SQL_SHOWN = 200  # characters of a statement a log line keeps


def log_sql(engine: Engine) -> Engine:
    """At DEBUG on `auditor.sql` (`auditor -vv`), one line per statement: its text and milliseconds, and its row
    count when the driver knows it. Never the bound parameters: they hold key hashes, aliases, sometimes raw keys.
    Attached only when DEBUG is on when the engine is made, so a normal run pays nothing."""
    if not SQL_LOG.isEnabledFor(logging.DEBUG):
        return engine

    @event.listens_for(engine, "before_cursor_execute")
    def _started(conn, _cursor, _statement, _parameters, _context, _executemany):
        conn.info.setdefault("auditor_sql_started", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _finished(conn, cursor, statement, _parameters, _context, executemany):
        started = conn.info.get("auditor_sql_started")
        elapsed_ms = (time.perf_counter() - started.pop()) * 1000 if started else float("nan")
        shown = " ".join(statement.split())
        if len(shown) > _SQL_SHOWN:
            shown = shown[: _SQL_SHOWN - 3] + "..."
        rows = getattr(cursor, "rowcount", -1)
        counted = f", {rows} rows" if isinstance(rows, int) and rows >= 0 else ""
        SQL_LOG.debug("%.1f ms%s%s: %s", elapsed_ms, counted, " (executemany)" if executemany else "", mask_text(shown))

    return engine


def describe_db_error(target: DatabaseTarget, err: DBAPIError) -> str:
    """One line for the user: what failed, without the password, and what to try."""
    return error_line(err, password_spellings(target.url.password))


def password_spellings(password: str | None) -> tuple[str, ...]:
    """A password as typed and as it may appear URL-encoded or decoded: each is masked."""
    if not password:
        return ()
    from urllib.parse import quote, unquote

    return tuple({password, quote(password, safe=""), unquote(password)})


def error_line(err: DBAPIError, secrets: tuple[str, ...] = ()) -> str:
    """A driver error's first line, masked; when PostgreSQL denied a privilege, which one the statement needed."""
    detail = str(getattr(err, "orig", err)).strip().splitlines()
    first = detail[0] if detail else type(err).__name__
    if "permission denied" in first:
        needed = needed_privilege(getattr(err, "statement", None), first)
        if needed:
            first += f": the role needs {needed} on it (docs/security.md lists every grant)"
    return mask_text(first, secrets)


_LOCKING_READ = re.compile(r"\bFOR\s+(NO\s+KEY\s+)?UPDATE\b", re.IGNORECASE)


def needed_privilege(statement: str | None, message: str = "") -> str | None:
    """The privilege a statement needs on the object PostgreSQL names in `message`: USAGE on a schema or sequence
    (CREATE for DDL), else the statement's verb on the table, and UPDATE for SELECT … FOR UPDATE."""
    words = (statement or "").split(None, 1)
    verb = words[0].upper() if words else ""
    if " for schema " in message or " for sequence " in message:
        return "CREATE" if verb in ("CREATE", "ALTER") else "USAGE"
    if verb == "SELECT" and _LOCKING_READ.search(statement or ""):
        return "UPDATE"
    return verb if verb in ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE") else None


@contextmanager
def connect(target: DatabaseTarget, *, read_only: bool = True, statement_timeout_s: float | None = None) -> Iterator[Connection]:
    """A connection inside one transaction; READ ONLY on PostgreSQL unless a writer asks otherwise."""
    if target.dialect == "sqlite" and read_only:
        _require_sqlite_file(target)
    engine = engine_for(target)
    try:
        try:
            conn = engine.connect()
        except OperationalError as err:
            raise UnavailableError(
                f"cannot connect to {target.masked} ({target.origin}): {describe_db_error(target, err)}"
            ) from None
        with conn:
            try:
                with conn.begin():
                    if target.dialect == "postgresql":
                        if read_only:
                            # one snapshot for every query of a scan: the watermark and the rows it cuts agree
                            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
                        # streams are always read to the end: plan server-side cursors for total time, not first rows
                        conn.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
                        # the charged-once EXISTS is costed per row though it runs only for job polls; that
                        # estimate trips JIT, whose compile time (~0.3 s a query) dwarfs these plans
                        conn.execute(text("SET LOCAL jit = off"))
                        if statement_timeout_s:
                            conn.execute(text(f"SET LOCAL statement_timeout = {max(1, round(statement_timeout_s * 1000))}"))
                    elif read_only:
                        conn.exec_driver_sql("PRAGMA query_only = ON")
                    yield conn
            except DBAPIError as err:
                raise _db_failure(target, err) from None
            finally:
                if target.dialect == "sqlite" and read_only and not conn.closed and not conn.invalidated:
                    try:
                        conn.exec_driver_sql("PRAGMA query_only = OFF")
                    except DBAPIError:
                        pass
    finally:
        engine.dispose()


def _require_sqlite_file(target: DatabaseTarget) -> None:
    """SQLite creates a missing file on connect: a reader given a mistyped path must say so, not leave an empty file."""
    from pathlib import Path

    path = target.url.database
    if path and path != ":memory:" and not path.startswith("file:") and not Path(path).is_file():
        raise UnavailableError(f"no SQLite database at {path} ({target.origin}): check the path")


def _db_failure(target: DatabaseTarget, err: DBAPIError) -> UnavailableError:
    detail = describe_db_error(target, err)
    if "statement timeout" in detail:
        return UnavailableError(
            f"a query on {target.masked} hit the statement timeout: raise --statement-timeout or narrow with --since"
        )
    if err.connection_invalidated:
        return UnavailableError(f"lost the connection to {target.masked}: {detail}")
    return UnavailableError(f"database error on {target.masked}: {detail}")


@contextmanager
def database_errors(target: DatabaseTarget) -> Iterator[None]:
    """Connection and SQL failures outside a read-only transaction (the backfill journal, its writes): one masked
    line, exit 3."""
    try:
        yield
    except DBAPIError as error:
        raise UnavailableError(f"database error on {target.masked}: {describe_db_error(target, error)}") from None


def analyze(target: DatabaseTarget, tables: list[str]) -> None:
    """Refresh planner statistics after a bulk load, so estimates (doctor) and plans are right."""
    engine = engine_for(target)
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in tables:
                conn.exec_driver_sql(f'ANALYZE "{table}"')
    finally:
        engine.dispose()
