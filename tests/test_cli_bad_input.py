"""Bad input found trying backfill and report as an SRE would (issue 13): each is one line on stderr and exit 2
(3 for a database that is not LiteLLM's, as scan has always said it), never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from auditor.cli.main import app

runner = CliRunner()


def one_line(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.strip().splitlines() if "using the embedded sample" not in line]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://bob:p@ss@db.internal:5432/litellm", ("p@ss", "ss@db")),
        ("postgresql://bob:a@b:c@db.internal:5432/litellm", ("a@b", "b:c", "c@db")),
        ("postgres://bob:x/y@z@db.internal/litellm", ("x/y", "y@z", "z@db")),
    ],
)
@pytest.mark.parametrize("command", [["scan"], ["report", "--out", "never"], ["backfill"], ["doctor"]])
def test_a_password_with_a_raw_at_or_colon_says_how_to_encode_it_and_prints_none_of_it(url, secret, command, tmp_path):
    line = one_line(runner.invoke(app, [*command, "--db", url]), 2)
    assert "percent-encode" in line and "%40" in line and "%3A" in line
    for piece in secret:
        assert piece not in line


def test_a_colon_in_a_password_that_parses_is_accepted():
    from auditor.ledger.db import parse_database_url

    assert parse_database_url("postgresql://bob:pa:ss@db.internal:5432/litellm").password == "pa:ss"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--tolerance", "nan"),
        ("--tolerance", "-1"),
        ("--tolerance", "inf"),
        ("--settle", "inf"),
        ("--settle", "nan"),
        ("--settle", "1e12"),
        ("--window-slack", "nan"),
    ],
)
@pytest.mark.parametrize("command", [["scan"], ["backfill"], ["report", "--out", "never"]])
def test_amounts_that_are_not_finite_or_negative_are_usage_errors(option, value, command):
    line = one_line(runner.invoke(app, [*command, option, value]), 2)
    assert line.startswith(f"auditor: {option} ") and ("finite number >= 0" in line or "ten years" in line)


@pytest.mark.parametrize("option", ["--flush-lag", "--increment-lag"])
def test_backfill_lags_must_be_finite(option):
    line = one_line(runner.invoke(app, ["backfill", option, "nan"]), 2)
    assert line.startswith(f"auditor: {option} 'nan'") or line.startswith(f"auditor: {option} nan")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--since", "99999999999d"),
        ("--since", "9999999999999w"),
        ("--now", "0001-01-01T00:00:00+01:00"),
        ("--until", "9999-12-31T23:59:59-05:00"),
        ("--now", "0001-01-01"),
    ],
)
@pytest.mark.parametrize("command", [["scan"], ["report", "--out", "never"]])
def test_instants_that_overflow_a_datetime_are_usage_errors(option, value, command):
    line = one_line(runner.invoke(app, [*command, option, value]), 2)
    assert f"{option} {value!r} is out of range" in line


def test_backfill_now_out_of_range_is_a_usage_error():
    line = one_line(runner.invoke(app, ["backfill", "--now", "0001-01-01"]), 2)
    assert "--now '0001-01-01' is out of range" in line


@pytest.mark.parametrize("command", [["scan"], ["backfill"]])
def test_a_model_that_names_nothing_is_a_usage_error_not_an_all_clear(command):
    line = one_line(runner.invoke(app, [*command, "--model", "gtp-4o"]), 2)  # the embedded sample
    assert "--model 'gtp-4o' names no budget entry" in line


def test_a_model_that_exists_still_filters():
    result = runner.invoke(app, ["scan", "--model", "gpt-4o", "--format", "json", "--now", "2026-11-22T00:00:00Z"])
    assert result.exit_code in (0, 1), result.output


@pytest.mark.parametrize("kind", ["empty sqlite", "empty postgresql", "other tables"])
def test_report_on_a_database_that_is_not_litellms_says_so(kind, tmp_path, request):
    from sqlalchemy import create_engine, text

    if kind == "empty sqlite":
        url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
        create_engine(url).connect().close()
    else:
        url = request.getfixturevalue("pg_url")
        if kind == "other tables":
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE invoices (id int)"))
            engine.dispose()
    line = one_line(runner.invoke(app, ["report", "--db", url, "--out", str(tmp_path / "out")]), 3)
    assert "is not LiteLLM's database (it has no LiteLLM_SpendLogs table)" in line
    assert "db upgrade" not in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
