"""Real services only: a fresh PostgreSQL database per test session, SQLite files, Redis db 13.

Outside CI a missing service skips its tests with a visible reason; in CI (CI set) it fails them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get("AUDITOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("AUDITOR_TEST_REDIS", "redis://127.0.0.1:6379/13")
IN_CI = bool(os.environ.get("CI"))
REPO = Path(__file__).resolve().parent.parent


def _unavailable(what: str, error: Exception):
    message = f"{what} is not reachable ({type(error).__name__}: {error})"
    if IN_CI:
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)


def import_litellm(module: str = "litellm"):
    """Import a LiteLLM module for the differential tests: skipped without the `differential` extra, but under CI
    an ImportError fails the test module (CI always installs the extra, so a missing one must not pass silently)."""
    import importlib

    if IN_CI:
        return importlib.import_module(module)
    return pytest.importorskip(
        module, reason="differential tests need the 'differential' extra: pip install -e '.[differential]'"
    )


# Where auditor finds a deployment's database, config and Redis when no option names them
DEPLOYMENT_ENV = (
    "AUDITOR_DATABASE_URL",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "CONFIG_FILE_PATH",
    "LITELLM_CONFIG_PATH",
)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path_factory):
    """No test may pick up the developer's LiteLLM settings or cache."""
    for name in DEPLOYMENT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def pg_server():
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure means no server
        engine.dispose()
        _unavailable("PostgreSQL at 127.0.0.1:5432", error)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_database_factory(pg_server):
    """Create throw-away databases; all are dropped when the session ends."""
    created: list[str] = []

    def create() -> str:
        name = f"auditor_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with pg_server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return str(make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False))

    yield create
    with pg_server.connect() as conn:
        for name in created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_database_factory) -> str:
    return pg_database_factory()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'litellm.sqlite'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_url(request) -> str:
    """A fresh empty database, once on SQLite and once on PostgreSQL (the test id says which)."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def dialect_url(request, any_url) -> tuple[str, str]:
    """(dialect, any_url), for tests whose expectations differ by dialect."""
    return request.node.callspec.params["any_url"], any_url


@pytest.fixture
def redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, decode_responses=True, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        _unavailable("Redis at 127.0.0.1:6379", error)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


# --- Hypothesis profiles -------------------------------------------------------------------------
# "dev" for every property test: no deadline (a shared 2-core machine makes timings noise) and the blob
# that reproduces a failure printed with it. "fuzz" is the long run of the tests marked `fuzz`
# (tests/test_fuzz.py), used under CI or with AUDITOR_FUZZ=1: about a minute in all on 2 cores.
# The fuzz tests take their settings from the "fuzz-tests" profile, which is one or the other.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("dev", deadline=None, print_blob=True)
_hypothesis_settings.register_profile("fuzz", parent=_hypothesis_settings.get_profile("dev"), max_examples=2000)
_hypothesis_settings.register_profile(
    "fuzz-tests", _hypothesis_settings.get_profile("fuzz" if IN_CI or os.environ.get("AUDITOR_FUZZ") else "dev")
)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
