"""`auditor report`: dated JSON/Markdown/HTML files written atomically, the quiet mode cron relies on, exit
codes, and the HTML page rendered in a real browser (Debian's chromium, headless) without a single request
leaving the machine. The sample deployment on the embedded SQLite default and on PostgreSQL.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
import struct
import subprocess
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import create_engine, update
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.cli.report import report_command
from auditor.errors import UnavailableError
from auditor.ledger.schema import metadata, spend_logs, verification_token
from auditor.reports import document as report_module
from auditor.reports.document import REPORT_KEYS, coverage, scan_part, write_reports
from conftest import DEPLOYMENT_ENV

REPO = Path(__file__).resolve().parent.parent
SCAN_SCHEMA = json.loads((REPO / "auditor" / "scan.schema.json").read_text())
REPORT_SCHEMA = json.loads((REPO / "auditor" / "report.schema.json").read_text())
SAMPLE_CONFIG = str(REPO / "sample_data" / "config.yaml")
NOW = "2026-11-22T00:00:00Z"
STEM = "auditor-report-20261122T000000Z"
ALL_FILES = {f"{STEM}.json", f"{STEM}.md", f"{STEM}.html", "latest.json", "latest.md", "latest.html"}
IN_CI = bool(os.environ.get("CI"))
UNSET = DEPLOYMENT_ENV  # conftest's isolation, for the module-scoped run below (function-scoped fixtures cannot reach it)
XSS_ALIASES = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
XSS_MODEL = "<svg onload=alert(1)>"

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def report_registered():
    """`auditor report` registered exactly as auditor/cli/main.py does it: `app.command("report")(report_command)`.
    Once cli.py registers it, this does nothing and the tests run the real registration."""
    if any(command.name == "report" for command in app.registered_commands):
        yield
        return
    app.command("report")(report_command)
    yield
    app.registered_commands[:] = [c for c in app.registered_commands if c.name != "report"]


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, ["report", *args], env=env)


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def load(directory: Path, name: str = f"{STEM}.json") -> dict:
    return json.loads((directory / name).read_text())


def expected(scanned: dict) -> dict:
    """The summary figures as the report must show them, from `auditor scan --format json` of the same data
    (the sample is regenerated as scenarios are added: its numbers are not copied here)."""
    totals, findings = scanned["totals"], scanned["findings"]
    over = [f for f in findings if f["kind"] == "over_budget"]
    unplaced = [f for f in findings if f["kind"] in ("unresolved_model", "ambiguous_model")]
    severity = totals["findings_by_severity"]
    return {
        "leaked": f"${totals['money_leaked']:,.2f}",
        "keys": len({f["entity_id"] for f in over if f["scope"] == "key"}),
        "keys_leaking": len({f["entity_id"] for f in over if f["scope"] == "key" and f["severity"] == "error"}),
        "drifting": totals["counters_drifting"],
        "unresolved": f"${math.fsum(f['logged_spend'] for f in unplaced):,.2f}",
        "unresolved_rows": scanned["rows"]["unresolved"],
        "charged_rows": scanned["rows"]["attributed"] + scanned["rows"]["unresolved"],
        "counts": f"{severity['error']} errors, {severity['warning']} warnings, {severity['info']} info",
    }


def summary(scanned: dict, html: Path) -> str:
    e = expected(scanned)
    entities, leaking = scanned["totals"]["entities_over_budget"], scanned["totals"]["entities_leaking"]
    return (
        f"auditor: {e['counts']}: {e['leaked']} leaked past budgets, "
        f"{entities} entities over budget ({e['keys']} keys), {leaking} leaking, "
        f"{e['drifting']} counters drifting, {e['unresolved']} unresolved spend ({e['unresolved_rows']:,} rows); report {html}"
    )


def research_agent() -> dict:
    """Scenario 1 as the sample's generator computed it (sample_data/expected.json): the classic failure."""
    reference = json.loads((REPO / "sample_data" / "expected.json").read_text())
    (key,) = [k for k in reference["keys"] if k["key_alias"] == "research-agent"]
    (entry,) = key["entries"]
    over = entry["over_budget_windows"]
    leaking = [w for w in over if w["severity"] == "error"]
    return {
        "token": key["token"],
        "entry": entry["entry"],
        "limit": entry["limit"],
        "duration": entry["duration"],
        "windows": entry["windows"],
        "over": len(over),
        "leaking": len(leaking),
        "leaked": math.fsum(w["spend_after_limit"]["raw"] for w in leaking),
        "reference": reference,
    }


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """One report of the embedded sample (no --db): the CLI builds it in an XDG cache of its own, since a report
    records its run history in the sample copy and this one must be the first."""
    out = tmp_path_factory.mktemp("sample") / "reports"  # created by the command
    env = {name: None for name in UNSET} | {"XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache"))}
    result = invoke("--out", str(out), "--now", NOW, env=env)
    scanned = runner.invoke(app, ["scan", "--now", NOW, "--format", "json"], env=env)
    return result, out, json.loads(scanned.stdout)


# ---------------------------------------------------------------------------------------------
# Files, JSON, exit codes


def test_sample_report_writes_the_dated_files_and_latest_atomically(sample_run):
    result, out, scanned = sample_run
    assert result.exit_code == 1, (result.stdout, result.stderr)  # the sample's errors, as scan
    assert files_in(out) == ALL_FILES  # exact names; no temp or probe file left behind
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for name in ALL_FILES:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    for fmt in ("json", "md", "html"):
        assert (out / f"latest.{fmt}").read_bytes() == (out / f"{STEM}.{fmt}").read_bytes()
    assert result.stdout.splitlines() == [
        f"wrote {out}/{STEM}.json",
        f"wrote {out}/{STEM}.md",
        f"wrote {out}/{STEM}.html",
        f"and latest.json, latest.md, latest.html in {out}",
        summary(scanned, out / f"{STEM}.html"),
    ]
    assert "embedded sample" in result.stderr


def test_the_json_is_the_scan_contract_with_the_run_in_front(sample_run):
    _, out, scanned = sample_run
    record = load(out)
    assert list(record)[:4] == list(REPORT_KEYS)
    jsonschema.validate(record, REPORT_SCHEMA)
    jsonschema.validate(scan_part(record), SCAN_SCHEMA)
    assert scan_part(record) == scanned  # exactly what `auditor scan --format json` prints
    run = record["run"]
    assert run["files"] == {"json": f"{STEM}.json", "md": f"{STEM}.md", "html": f"{STEM}.html"}
    assert run["options"]["now"] == "2026-11-22T00:00:00.000Z" and run["options"]["now_given"] is True
    assert run["options"]["fail_on"] == "error" and run["options"]["formats"] == ["json", "md", "html"]
    assert re.fullmatch(r"[0-9a-f-]{36}", run["id"]) and run["duration_s"] > 0
    assert record["changes"]["previous_run"] is None  # the first run of this history
    assert len(record["changes"]["finding_ids"]) == len(record["findings"])
    assert record["changes"]["new"] == record["changes"]["finding_ids"]
    # coverage per resolver rule, checked against the sample's own rows
    rows = research_agent()["reference"]["scan_rows"]
    logs = json.loads((REPO / "sample_data" / "litellm_tables.json").read_text())["LiteLLM_SpendLogs"]
    charged = [r for r in logs if r.get("status") != "failure" and r.get("api_key")]
    cov = record["coverage"]
    assert (cov["basis"], cov["charged_rows"]) == ("resolutions", rows["attributed"] + rows["unresolved"])
    assert cov["charged_spend"] == pytest.approx(math.fsum(r["spend"] for r in charged), abs=1e-6)
    by = {(b["status"], b["rule"]): b["rows"] for b in cov["by_provenance"]}
    assert sum(by.values()) == len(charged)
    assert by[("unresolved", None)] == rows["unresolved"]
    # rows without model_group but with a known deployment id are placed by model_id
    assert by[("resolved", "model_id")] == sum(1 for r in charged if not r.get("model_group") and r.get("model_id"))
    assert sorted(m["model"] for m in cov["unplaced_models"]) == ["llama3.1:8b", "ollama/llama3.1:8b"]
    assert sum(m["rows"] for m in cov["unplaced_models"]) == rows["unresolved"]


def test_the_markdown_is_the_scans_with_the_run_underneath(sample_run):
    _, out, scanned = sample_run
    text = (out / f"{STEM}.md").read_text()
    assert text.startswith("# auditor scan, as of 2026-11-22T00:00:00.000Z\n")
    assert f"- money leaked past working limits: **${scanned['totals']['money_leaked']:,.4f}**" in text
    assert text.rstrip().splitlines()[-1].endswith(f"charts and resolver coverage: `{STEM}.html`")


def test_the_html_is_self_contained(sample_run):
    _, out, _ = sample_run
    page = Page.parse((out / f"{STEM}.html").read_text())
    assert page.tags.isdisjoint({"script", "link", "iframe", "object", "embed", "img", "image", "use", "base", "form"})
    assert page.external_references() == []
    assert page.csp == "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
    assert "@page { size: A4" in page.style and "@media print" in page.style
    assert "@import" not in page.style and "url(" not in page.style


def test_quiet_prints_one_line_when_findings_reach_fail_on(tmp_path, sample_run):
    result = invoke("--out", str(tmp_path / "r"), "--now", NOW, "--quiet")
    assert result.exit_code == 1
    assert result.stdout == summary(sample_run[2], tmp_path / "r" / f"{STEM}.html") + "\n"
    assert files_in(tmp_path / "r") == ALL_FILES


def test_quiet_says_nothing_below_fail_on(tmp_path):
    result = invoke("--out", str(tmp_path), "--now", NOW, "--quiet", "--fail-on", "never", "--formats", "json")
    assert (result.exit_code, result.stdout) == (0, "")
    assert files_in(tmp_path) == {f"{STEM}.json", "latest.json"}


def build_clean(url: str) -> str:
    """One key capped at $10 a day on gpt-4o, four $0.50 requests, its scalar spend as LiteLLM keeps it."""
    t0 = datetime(2026, 11, 20, 9)
    rows = [
        {
            "request_id": f"req-{i}",
            "call_type": "acompletion",
            "api_key": "a" * 64,
            "spend": 0.5,
            "startTime": t0 + timedelta(hours=i, seconds=-2),
            "endTime": t0 + timedelta(hours=i),
            "model": "azure/prod-gpt4o",
            "model_group": "gpt-4o",
            "model_id": "dep-gpt4o",
            "status": "success",
            "metadata": {},
        }
        for i in range(4)
    ]
    key = {
        "token": "a" * 64,
        "key_alias": "tidy",
        "model_max_budget": {"gpt-4o": {"budget_limit": 10.0, "time_period": "1d"}},
        "spend": 2.0,
        "total_spend": 2.0,
    }
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(verification_token.insert(), [key])
            conn.execute(spend_logs.insert(), rows)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def clean_config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: azure/prod-gpt4o\n"
        "    model_info:\n      id: dep-gpt4o\n"
    )
    return str(path)


def test_quiet_on_a_clean_database_prints_nothing_at_all(sqlite_url, clean_config, tmp_path):
    out = tmp_path / "reports"
    result = invoke(
        "--db",
        build_clean(sqlite_url),
        "--config",
        clean_config,
        "--out",
        str(out),
        "--now",
        NOW,
        "--quiet",
        "--fail-on",
        "warning",
        "--formats",
        "html,json",
    )
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")  # cron sends no mail
    assert files_in(out) == {f"{STEM}.json", f"{STEM}.html", "latest.json", "latest.html"}
    record = load(out)
    assert record["findings"] == [] and record["run"]["options"]["formats"] == ["json", "html"]
    html = (out / f"{STEM}.html").read_text()
    assert "No errors or warnings" in html
    noisy = invoke("--db", sqlite_url, "--config", clean_config, "--out", str(out), "--now", NOW)
    assert noisy.exit_code == 0 and noisy.stdout.splitlines()[-1] == f"auditor: no findings; report {out}/{STEM}.html"


@pytest.mark.parametrize("formats", ["pdf", "json,xml", ","])
def test_unknown_formats_are_a_usage_error_before_anything_runs(tmp_path, formats):
    result = invoke("--out", str(tmp_path / "r"), "--formats", formats)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"auditor: --formats takes a comma-separated list of json, md, html (got {formats!r})"
    ]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("where", ["below a file", "a file", "read-only"])
def test_an_unwritable_out_exits_3_with_one_line_and_writes_nothing(tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory\n")
    if where == "below a file":
        out, reason = blocker / "reports", "Not a directory"
    elif where == "a file":
        out, reason = blocker, "not a directory"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into a 0500 directory; the other cases cover root")
        out, reason = tmp_path / "ro", "Permission denied"
        out.mkdir(mode=0o500)
    result = invoke("--out", str(out), "--now", NOW)
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"auditor: cannot write reports to {out}: {reason}"]
    assert files_in(tmp_path) == ({"blocker", "ro"} if where == "read-only" else {"blocker"})
    assert blocker.read_text() == "not a directory\n"
    if where == "read-only":
        assert files_in(out) == set()


def test_a_failed_write_removes_this_runs_dated_files_and_keeps_latest(tmp_path, monkeypatch):
    """A disk that fills up between two files: no run is left with some formats only, latest.* stay the old run's."""
    for fmt in ("json", "html"):
        (tmp_path / f"latest.{fmt}").write_text(f"previous {fmt}\n")
    real = report_module.write_atomic

    def failing(path, content, mode=0o600):
        if str(path).endswith(".html"):
            raise UnavailableError(f"cannot write {path}: No space left on device")
        real(path, content, mode)

    monkeypatch.setattr(report_module, "write_atomic", failing)
    names = {"json": f"{STEM}.json", "html": f"{STEM}.html"}
    with pytest.raises(UnavailableError, match="No space left on device"):
        write_reports(tmp_path, names, {"json": "{}\n", "html": "<!DOCTYPE html>\n"})
    assert files_in(tmp_path) == {"latest.json", "latest.html"}
    assert (tmp_path / "latest.json").read_text() == "previous json\n"


def test_bad_options_exit_2_like_scan(tmp_path):
    result = invoke("--out", str(tmp_path), "--now", "yesterday-ish")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert invoke("--out", str(tmp_path), "--tolerance", "-1").exit_code == 2
    assert files_in(tmp_path) == set()


def test_an_unreachable_database_exits_3_and_writes_nothing(tmp_path):
    result = invoke("--db", "postgresql://nobody:topsecret@127.0.0.1:1/x", "--out", str(tmp_path), "--now", NOW)
    assert result.exit_code == 3
    assert len(result.stderr.strip().splitlines()) == 1 and "topsecret" not in result.stderr
    assert files_in(tmp_path) == set()


def test_help_shows_a_ready_to_paste_example():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "auditor report --out " in result.output.split("Example", 1)[1]


@pytest.mark.postgres
def test_report_on_postgresql_matches_the_embedded_sample(pg_url, tmp_path, sample_run):
    loaded = runner.invoke(app, ["sample", "load", "--db", pg_url])
    assert loaded.exit_code == 0, loaded.output
    upgraded = runner.invoke(app, ["db", "upgrade", "--db", pg_url])  # the run history lives in auditor's tables
    assert upgraded.exit_code == 0, upgraded.output
    out = tmp_path / "pg"
    result = invoke("--db", pg_url, "--config", SAMPLE_CONFIG, "--out", str(out), "--now", NOW, "--quiet")
    assert result.exit_code == 1 and len(result.stdout.splitlines()) == 1
    assert files_in(out) == ALL_FILES
    record, sqlite_record = load(out), load(sample_run[1])
    jsonschema.validate(scan_part(record), SCAN_SCHEMA)
    jsonschema.validate(record, REPORT_SCHEMA)
    assert record["source"]["dialect"] == "postgresql"
    assert record["totals"] == sqlite_record["totals"]
    assert record["rows"] == sqlite_record["rows"]
    assert record["coverage"] == sqlite_record["coverage"]

    def shape(r: dict) -> list[tuple]:
        return [(f["kind"], f["severity"], f["entity_id"], f["budget_model"], f["window_start"]) for f in r["findings"]]

    assert shape(record) == shape(sqlite_record)


# ---------------------------------------------------------------------------------------------
# Coverage once the scan records its resolutions


def test_coverage_per_resolver_rule_when_the_scan_records_resolutions():
    """The shape proposed for ScanResult.resolutions: one dict per distinct charged (model, model_group, model_id)."""
    scan = {
        "rows": {"attributed": 9, "unresolved": 3},
        "findings": [
            {"kind": "unresolved_model", "model": "llama3", "model_group": None, "requests": 3, "logged_spend": 0.0},
        ],
    }
    resolutions = [
        {
            "model": "azure/x",
            "model_group": "gpt-4o",
            "model_id": "d1",
            "status": "resolved",
            "group": "gpt-4o",
            "rule": "model_group",
            "rows": 5,
            "spend": 2.5,
        },
        {
            "model": "azure/x",
            "model_group": None,
            "model_id": "d1",
            "status": "resolved",
            "group": "gpt-4o",
            "rule": "model_id",
            "rows": 3,
            "spend": 1.0,
        },
        {
            "model": "x",
            "model_group": None,
            "model_id": None,
            "status": "resolved",
            "group": "gpt-4o",
            "rule": "model_group",
            "rows": 1,
            "spend": 0.5,
        },
        {
            "model": "llama3",
            "model_group": None,
            "model_id": None,
            "status": "unresolved",
            "group": None,
            "rule": "unresolved",
            "rows": 3,
            "spend": 0.0,
        },
    ]
    assert coverage(scan, resolutions) == {
        "basis": "resolutions",
        "charged_rows": 12,
        "charged_spend": 4.0,
        "by_provenance": [
            {"status": "resolved", "rule": "model_group", "rows": 6, "spend": 3.0},
            {"status": "resolved", "rule": "model_id", "rows": 3, "spend": 1.0},
            {"status": "unresolved", "rule": None, "rows": 3, "spend": 0.0},
        ],
        "unplaced_models": [{"status": "unresolved", "model": "llama3", "model_group": None, "rows": 3, "spend": 0.0}],
    }


# ---------------------------------------------------------------------------------------------
# The page in a real browser


class Page(HTMLParser):
    """Tags, attributes, the CSP, the style sheet, and the text under each element with an id."""

    VOID = {"meta", "br", "img", "link", "input", "hr", "col", "source", "wbr", "area", "base", "embed", "param", "track"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str, str]] = []
        self.csp = ""
        self.style = ""
        self.text_by_id: dict[str, str] = {}
        self._open: list[tuple[str, str | None]] = []
        self._in_style = False

    @classmethod
    def parse(cls, html: str) -> Page:
        page = cls()
        page.feed(html)
        page.close()
        return page

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        values = dict(attrs)
        for name, value in attrs:
            self.attributes.append((tag, name, value or ""))
        if tag == "meta" and (values.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = values.get("content") or ""
        self._in_style = tag == "style"
        if tag not in self.VOID and not tag.endswith("/"):
            self._open.append((tag, values.get("id")))
            if values.get("id"):
                self.text_by_id.setdefault(values["id"], "")

    def handle_startendtag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            self.attributes.append((tag, name, value or ""))

    def handle_endtag(self, tag):
        self._in_style = False
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        for _, ident in self._open:
            if ident:
                self.text_by_id[ident] += data

    def text(self, ident: str) -> str:
        return " ".join(self.text_by_id[ident].split())

    def external_references(self) -> list[tuple[str, str, str]]:
        """Attributes that could make a browser fetch or run something: none may exist."""
        risky = {"src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data", "background", "ping"}
        return [
            (tag, name, value)
            for tag, name, value in self.attributes
            if name.startswith("on")
            or (name in risky and not value.startswith("#"))
            or re.search(r"(?i)\b(?:https?|ftp|javascript):", value)
            and name not in ("content", "aria-label")
        ]


def chromium_binary() -> str:
    found = shutil.which("chromium")
    if found is None:
        if IN_CI:
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium", pytrace=False)
        pytest.skip("chromium is not installed (apt-get install chromium): the browser tests need it")
    return found


def chromium(page: Path, tmp_path: Path, *mode: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Headless chromium on a file:// URL, every network event logged; returns the run and the requests
    the page itself started (chromium's own background traffic is told apart by its isolation key)."""
    netlog = tmp_path / f"netlog-{len(list(tmp_path.glob('netlog-*')))}.json"
    command = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--log-net-log={netlog}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        *mode,
        page.resolve().as_uri(),
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)}, stdin=subprocess.DEVNULL
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run, page_requests(netlog)


def page_requests(netlog: Path) -> list[dict]:
    raw = netlog.read_text()
    try:
        log = json.loads(raw)
    except json.JSONDecodeError:  # a log cut short still holds complete events
        log = json.loads(raw.rstrip().rstrip(",") + "]}")
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    requests = []
    for event in log["events"]:
        params = event.get("params") or {}
        if names.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        from_page = params.get("initiator") == "null" or "file://" in params.get("network_isolation_key", "")
        if from_page and not params["url"].startswith(("file:", "data:")):
            requests.append(params)
    return requests


def test_the_network_check_catches_a_page_that_fetches(tmp_path):
    """The negative control: the netlog check sees an image and a style sheet a page asks for."""
    leaky = tmp_path / "leaky.html"
    leaky.write_text(
        '<!DOCTYPE html><title>x</title><img src="http://203.0.113.7/x.png">'
        '<link rel="stylesheet" href="https://example.invalid/a.css"><p>hi</p>'
    )
    _, requests = chromium(leaky, tmp_path, "--dump-dom")
    assert {r["url"] for r in requests} == {"http://203.0.113.7/x.png", "https://example.invalid/a.css"}
    assert Page.parse(leaky.read_text()).external_references() != []


def test_the_report_renders_in_chromium_with_its_figures_and_no_request(sample_run, tmp_path):
    _, out, scanned = sample_run
    run, requests = chromium(out / "latest.html", tmp_path, "--dump-dom")
    assert requests == []
    dom = Page.parse(run.stdout)
    assert "script" not in dom.tags and "img" not in dom.tags
    e = expected(scanned)
    assert dom.text("fig-money-leaked").startswith(f"Leaked past budgets {e['leaked']} admitted after a limit was reached")
    assert dom.text("fig-keys-over-budget").startswith(
        f"Keys over budget {e['keys']} {e['keys_leaking']} with enforcement failing"
    )
    assert dom.text("fig-counters-drifting").startswith(f"Counters drifting {e['drifting']} disagree with the ledger")
    assert dom.text("fig-unresolved-spend") == (
        f"Unresolved spend {e['unresolved']} {e['unresolved_rows']:,} of {e['charged_rows']:,} charged rows not placed in a model group"
    )
    # the classic failure first: research-agent, $1 a day on claude-opus-4-6, windows far above the line
    ra = research_agent()
    first = dom.text("entity-1")
    assert first.startswith(f"key research-agent {ra['token'][:16]}… ")
    assert f"${ra['leaked']:,.4f} leaked in {ra['leaking']} windows" in first
    assert (
        f"{ra['entry']}: ${ra['limit']:,.2f} per {ra['duration']} · {ra['windows']} windows, {ra['over']} over budget "
        f"({ra['leaking']} leaking ${ra['leaked']:,.2f})"
    ) in first
    charts = [value for tag, name, value in dom.attributes if tag == "svg" and name == "aria-label"]
    assert (
        f"{ra['entry']}: {ra['windows']} windows of {ra['duration']}, {ra['over']} above the ${ra['limit']:,.4f} budget line"
        in charts
    )


def test_the_report_screenshot(sample_run, tmp_path):
    """A 1280x2000 screenshot renders; AUDITOR_UPDATE_SCREENSHOT=1 keeps it as docs/report-sample.png."""
    _, out, _ = sample_run
    shot = tmp_path / "report.png"
    _, requests = chromium(out / "latest.html", tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert requests == []
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1280, 2000)
    assert len(png) > 100_000  # tiles, a table and a chart, not a blank page
    if os.environ.get("AUDITOR_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, REPO / "docs" / "report-sample.png")


@pytest.fixture
def hostile_sample(tmp_path) -> str:
    """The sample with key aliases and a model name that are HTML: user input, stored in the database."""
    url = f"sqlite:///{tmp_path / 'hostile.sqlite'}"
    assert runner.invoke(app, ["sample", "load", "--db", url]).exit_code == 0
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for old, new in zip(("research-agent", "support-bot"), XSS_ALIASES):
                conn.execute(update(verification_token).where(verification_token.c.key_alias == old).values(key_alias=new))
            conn.execute(update(spend_logs).where(spend_logs.c.model == "llama3.1:8b").values(model=XSS_MODEL))
    finally:
        engine.dispose()
    return url


def test_html_in_aliases_and_model_names_is_shown_as_text(hostile_sample, tmp_path):
    out = tmp_path / "reports"
    result = invoke("--db", hostile_sample, "--config", SAMPLE_CONFIG, "--out", str(out), "--now", NOW, "--formats", "html")
    assert result.exit_code == 1, result.stderr
    html = (out / f"{STEM}.html").read_text()
    for raw in (*XSS_ALIASES, XSS_MODEL):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;svg onload=alert(1)&gt;" in html
    static = Page.parse(html)
    assert static.tags.isdisjoint({"script", "img"}) and static.external_references() == []
    run, requests = chromium(out / f"{STEM}.html", tmp_path, "--dump-dom")
    assert requests == []
    dom = Page.parse(run.stdout)
    assert dom.tags.isdisjoint({"script", "img"})
    assert not [a for a in dom.attributes if a[1].startswith("on")]
    assert dom.text("entity-1").startswith(f"key {XSS_ALIASES[0]} {research_agent()['token'][:16]}…")  # the alias, as text
    assert XSS_ALIASES[1] in " ".join(dom.text_by_id.values())
    assert XSS_MODEL in run.stdout.replace("&lt;", "<").replace("&gt;", ">")


def test_money_is_summed_exactly(sample_run):
    """The tiles come from totals the scan rounded; the per-entity figures are fsums of the findings."""
    _, out, _ = sample_run
    record = load(out)
    leaked = math.fsum(f["spend_after_limit"] or 0.0 for f in record["findings"] if f["kind"] == "over_budget")
    assert round(leaked, 6) == record["totals"]["money_leaked"]


# ---------------------------------------------------------------------------------------------
# Where the money went


def test_where_the_money_went_is_the_spend_table_in_json_markdown_and_html(sample_run, tmp_path):
    """The report's `money` is `auditor spend --by key --top 10` of the same ledger (summed per day there, so equal
    to the float), every model group's total, and each day's spend per group adding up to those totals."""
    _, out, scanned = sample_run
    record = load(out)
    money = record["money"]
    env = {name: None for name in UNSET} | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    spend = json.loads(runner.invoke(app, ["spend", "--top", "10", "--format", "json"], env=env).stdout)
    table = money["table"]
    strip = lambda line: {k: v for k, v in line.items() if k not in ("spend", "share")}  # noqa: E731
    assert [strip(ln) for ln in table["lines"]] == [strip(ln) for ln in spend["lines"]]
    assert [ln["spend"] for ln in table["lines"]] == pytest.approx([ln["spend"] for ln in spend["lines"]], abs=1e-9)
    assert table["omitted"] == {**spend["omitted"], "spend": pytest.approx(spend["omitted"]["spend"], abs=1e-9)}
    assert table["total_requests"] == scanned["rows"]["attributed"] + scanned["rows"]["unresolved"]
    groups = {g["model_group"]: g["spend"] for g in money["model_groups"]}
    assert math.fsum(groups.values()) == pytest.approx(table["total_spend"], abs=1e-9)
    days = money["daily"]["days"]
    assert days == [f"2026-11-{d:02d}" for d in range(1, 22)]  # the sample's traffic, 1 .. 21 November (UTC)
    for series in money["daily"]["series"]:
        assert len(series["spend"]) == len(days)
        assert math.fsum(series["spend"]) == pytest.approx(groups[series["model_group"]], abs=1e-9), series["model_group"]

    markdown = (out / f"{STEM}.md").read_text()
    assert "## Where the money went" in markdown
    assert "| total | research-agent \\(c53fc536…\\) | claude-opus-4-6 |" in markdown

    page = (out / f"{STEM}.html").read_text()
    section = page[page.index('<h2 id="money">') : page.index("<h2>Resolver coverage")]
    assert section.count('<rect class="mg0"') == len(days) + 1  # a segment per day of the biggest group, and its swatch
    assert "research-agent (c53fc536…)" in section and "claude-opus-4-6" in section
