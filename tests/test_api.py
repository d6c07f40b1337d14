"""auditor.api: README's "Use it from Python" example runs as printed and says what the CLI says; the library
loads no Typer or Rich; bad input is the CLI's typed error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import auditor
from auditor.cli.main import app
from auditor.errors import InputError
from auditor.exitcodes import ExitCode
from conftest import DEPLOYMENT_ENV

REPO = Path(__file__).resolve().parent.parent
NOW = "2026-11-22T00:00:00Z"  # the instant README's example judges the sample at
RESOLVED_FROM = DEPLOYMENT_ENV  # unset, so both sides read the embedded sample


@pytest.fixture
def no_deployment(monkeypatch):
    for name in RESOLVED_FROM:
        monkeypatch.delenv(name, raising=False)
    return {k: v for k, v in os.environ.items() if k not in RESOLVED_FROM}


def readme_examples() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Use it from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2  # the read side on the sample; backfill (run by test_backfill.py on a live database)
    return blocks


def readme_example() -> str:
    return readme_examples()[0]


def cli_json(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_the_readme_example_runs_and_agrees_with_the_cli(no_deployment, tmp_path):
    code = readme_example() + "\nimport sys\nprint(sorted({'typer', 'rich'} & set(sys.modules)))\n"
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=no_deployment, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr

    scan = cli_json("scan", "--now", NOW, "--fail-on", "never")
    teams = cli_json("spend", "--by", "team", "--period", "month")
    severities = [f["severity"] for f in scan["findings"]]
    worst = next(s for s in ("error", "warning", "info") if s in severities)
    expected = [f"{worst} {len(scan['findings'])}"]
    expected += [
        f"{f['kind']} {f['entity_alias']} {f['budget_model']} {f['spend_after_limit']}"
        for f in scan["findings"]
        if f["severity"] == "error"
    ]
    expected += [f"{len(teams['lines'])} team lines", "scan can run", "[]"]
    said = ran.stdout.splitlines()
    reported = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "cli"), "--now", NOW, "--fail-on", "never"])
    assert reported.exit_code == 0, reported.output
    summary = reported.stdout.splitlines()[-1]  # the same summary, naming the CLI's directory instead
    assert said.pop(-2) == summary.replace(str(tmp_path / "cli"), "reports")
    errors = len(expected) - 4  # the JSON lists findings in its own order: compare the error lines as a multiset
    assert said[:1] + sorted(said[1:-3]) + said[-3:] == expected[:1] + sorted(expected[1:-3]) + expected[-3:]
    assert len(said) == len(expected) and errors > 3  # the sample has errors to show
    assert "using the embedded sample deployment" in ran.stderr  # said through the `auditor` logger


def test_bad_input_is_the_clis_typed_error(no_deployment):
    with pytest.raises(InputError) as raised:
        auditor.spend(by="department")
    assert raised.value.exit_code == ExitCode.USAGE
    with pytest.raises(InputError, match="--since"):
        auditor.scan(since="last tuesday", warn=lambda text: None)


def test_warnings_go_where_the_caller_says(no_deployment):
    said: list[str] = []
    report = auditor.doctor(warn=said.append)
    assert report.can_scan
    assert said == ["no database configured (--db, AUDITOR_DATABASE_URL, DATABASE_URL): using the embedded sample deployment"]


def test_report_from_python_is_the_report_command(no_deployment, tmp_path):
    from auditor.reports import history  # the reports package is named apart from the library call

    assert history.KIND and auditor.report is auditor.api.report
    said: list[str] = []
    run = auditor.report(out=tmp_path / "r", formats="json,md", now=NOW, warn=said.append)
    assert isinstance(run, auditor.api.ReportRun) and run.formats == ("json", "md")
    assert [p.name for p in run.written] == [run.files["json"], run.files["md"]] and all(p.exists() for p in run.written)
    assert json.loads((tmp_path / "r" / "latest.json").read_text()) == run.record
    assert run.main_file == str(tmp_path / "r" / run.files["json"]) and run.summary().endswith(f"; report {run.main_file}")
    assert run.result.worst() == "error" and run.notices == []
    assert said == ["no database configured (--db, AUDITOR_DATABASE_URL, DATABASE_URL): using the embedded sample deployment"]
    again = auditor.report(out=tmp_path / "r", formats=["json"], now=NOW, incremental=True, warn=said.append)
    assert again.changes["previous_run"] == run.run_id and again.changes["counts"]["new_errors"] == 0
    with pytest.raises(InputError, match="--formats"):
        auditor.report(out=tmp_path / "r", formats="pdf", warn=said.append)
    with pytest.raises(InputError, match="--fail-on"):
        auditor.report(out=tmp_path / "r", fail_on="sometimes", warn=said.append)


def test_resolve_from_python_is_the_resolve_command(no_deployment):
    """auditor.resolve answers what `auditor resolve` prints: the same JSON, the same governing entry for a key."""
    said: list[str] = []
    every = auditor.resolve(all_models=True, warn=said.append)
    cli = CliRunner().invoke(app, ["resolve", "--all", "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout) == every.as_record() and len(every.models) > 3
    assert [r.status for _, r in every.models][:1] == ["unresolved"]  # unresolved and ambiguous first

    name = "vertex_ai/claude-opus-4-6@default"
    one = auditor.resolve(name, key="research-agent", warn=said.append)
    cli = CliRunner().invoke(app, ["resolve", name, "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout) == one.as_record() and one.requested == "claude-opus-4-6"
    text = CliRunner().invoke(app, ["resolve", name, "--key", "research-agent"], env={"COLUMNS": "200"}).stdout
    assert one.key is not None and one.key.governs == "claude-opus-4-6"
    assert f"    {one.key.governs}: {one.key.considered[0].why} [→ governs]" in text.splitlines()
    assert said == ["no database configured (--db, AUDITOR_DATABASE_URL, DATABASE_URL): using the embedded sample deployment"] * 2
    with pytest.raises(InputError, match="not both"):
        auditor.resolve(name, all_models=True, warn=said.append)


def test_explain_from_python_is_the_explain_command(no_deployment):
    """auditor.explain is the Story `auditor explain` renders: each entry, its windows, who crossed each limit."""
    from auditor.audit.explain import Story

    story = auditor.explain("research-agent", now=NOW, warn=lambda text: None)
    assert isinstance(story, Story) and story.budgets.alias == "research-agent"
    text = CliRunner().invoke(app, ["explain", "research-agent", "--now", NOW], env={"COLUMNS": "400"}).stdout
    crossed = [w for e in story.entries for w in e.windows if w.crossed_by]
    assert crossed and all(f"crossed by {w.crossed_by} at {w.crossed_at:%m-%d %H:%M:%S}" in text for w in crossed)
    for entry in story.entries:
        assert f"  {entry.name}: " in text and f", {len(entry.windows)} windows" in text
    team = auditor.explain(team="team-data", since="30d", now=NOW, warn=lambda text: None)
    text = (
        CliRunner().invoke(app, ["explain", "--team", "team-data", "--since", "30d", "--now", NOW], env={"COLUMNS": "400"}).stdout
    )
    assert team.budgets.scope == "team" and text.startswith(f"team {team.budgets.alias or team.budgets.entity_id} (")
    with pytest.raises(InputError, match="name one entity"):
        auditor.explain("research-agent", team="team-data", warn=lambda text: None)


def test_scan_json_puts_each_spend_line_and_finding_on_a_line_of_its_own(no_deployment):
    """`scan --format json` is laid out like the report's JSON file: grep and diff see one finding a line."""
    result = CliRunner().invoke(app, ["scan", "--now", NOW, "--fail-on", "never", "--format", "json"])
    record = json.loads(result.stdout)
    items = [json.loads(line.strip().rstrip(",")) for line in result.stdout.splitlines() if line.startswith("    {")]
    assert len(record["findings"]) > 5 and items == [*record["spend"], *record["findings"]]
