"""`auditor spend` on a small hand-made ledger, on SQLite and PostgreSQL. Every expected figure is worked out by
hand from the rows below (in the comments), and the per-key totals are also checked against a plain SQL SUM.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.ledger.schema import metadata, spend_logs, team_table, verification_token

runner = CliRunner()

CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params: {model: azure/prod-gpt4o}
    model_info: {id: dep-gpt4o}
  - model_name: claude-opus-4-6
    litellm_params: {model: vertex_ai/claude-opus-4-6@default}
    model_info: {id: dep-opus-vertex}
  - model_name: claude-opus-4-6
    litellm_params: {model: bedrock/us.anthropic.claude-opus-4-6-v1:0}
    model_info: {id: dep-opus-bedrock}
router_settings:
  model_group_alias: {gpt4: gpt-4o}
"""

A, B = "a" * 64, "b" * 64
T0 = datetime(2026, 3, 2, 12)  # a Monday, noon UTC

_n = iter(range(10_000))


def row(
    spend: float,
    *,
    key: str = A,
    at: datetime = T0,
    model: str = "azure/prod-gpt4o",
    group: str = "gpt-4o",
    model_id: str = "dep-gpt4o",
    status: str = "success",
    team: str | None = "team-x",
    user: str = "u1",
    tags: object = (),
    call_type: str = "acompletion",
    cache_hit: str = "False",
    prompt: int = 10,
    completion: int = 5,
    request_id: str | None = None,
    session: str | None = None,
) -> dict:
    return {
        "request_id": request_id or f"r{next(_n):05d}",
        "call_type": call_type,
        "api_key": key,
        "spend": spend,
        "startTime": at,
        "endTime": at + timedelta(seconds=1),
        "model": model,
        "model_group": group,
        "model_id": model_id,
        "status": status,
        "team_id": team,
        "user": user,
        "end_user": None,
        "request_tags": list(tags) if isinstance(tags, (list, tuple)) else tags,
        "cache_hit": cache_hit,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "metadata": {},
        "session_id": session,
    }


OPUS_VERTEX = dict(model="vertex_ai/claude-opus-4-6@default", group="claude-opus-4-6", model_id="dep-opus-vertex")
OPUS_BEDROCK = dict(model="bedrock/us.anthropic.claude-opus-4-6-v1:0", group="", model_id="")  # an old row: model only

ROWS = [
    # key A (alias "alpha"), team-x
    row(1.25, tags=["prod", "chat"]),  # gpt-4o
    row(0.75, tags=["prod"], cache_hit="True", prompt=0, completion=0),  # gpt-4o, a cache hit
    row(0.5, model="azure/prod-gpt4o", group="gpt4", tags=None),  # gpt-4o through the router alias gpt4
    row(2.0, **OPUS_VERTEX),  # claude-opus-4-6, Vertex deployment
    row(3.0, **OPUS_BEDROCK, prompt=100, completion=50),  # claude-opus-4-6, Bedrock deployment
    row(9.0, status="failure", **OPUS_VERTEX),  # a failure: a column, never spend
    row(0.125, model="mystery-model", group="", model_id=""),  # the resolver cannot place it
    # key B, no team
    row(4.0, key=B, team=None, user="u2", tags=["batch"]),  # gpt-4o
    # one batch job polled three times after it finished: charged once (the first poll), repeats ignored
    *(
        row(
            6.0,
            key=B,
            team=None,
            user="u2",
            call_type="aretrieve_batch",
            at=T0 + timedelta(minutes=m),
            session="batch-1",
            tags=["batch"],
        )
        for m in (1, 2, 3)
    ),
    # no key: LiteLLM never charges it
    row(7.0, key="", team=None),
]
# Hand totals (charged = success, with a key, not a repeat poll):
#   A: gpt-4o 1.25 + 0.75 + 0.5 = 2.5 (3 requests, 1 cache hit, alias gpt4 named); claude-opus-4-6 2.0 + 3.0 = 5.0
#      (2 requests, 1 failure); unresolved 0.125 (mystery-model). A total 7.625.
#   B: gpt-4o 4.0 + 6.0 = 10.0 (2 requests); 2 repeat polls ($12) ignored.
#   ledger total 17.625 in 8 requests; ignored: 1 failure, 1 empty api_key, 2 repeat job poll.


def build(url: str, rows: list[dict] = ROWS) -> str:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(
                verification_token.insert(),
                [
                    {"token": A, "key_alias": "alpha", "model_max_budget": {}, "team_id": "team-x"},
                    {"token": B, "key_alias": None, "model_max_budget": {}, "team_id": None},
                ],
            )
            conn.execute(team_table.insert(), [{"team_id": "team-x", "team_alias": "Team X", "models": []}])
            conn.execute(spend_logs.insert(), rows)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


@pytest.fixture
def ledger(any_url) -> str:
    return build(any_url)


def spend(url: str, config: str, *args: str) -> dict:
    result = runner.invoke(app, ["spend", "--db", url, "--config", config, "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def lines(record: dict) -> list[tuple]:
    return [(ln["period"], ln["entity_id"], ln["model_group"], round(ln["spend"], 9), ln["requests"]) for ln in record["lines"]]


def test_by_key_merges_deployments_names_the_alias_and_keeps_unresolved_apart(ledger, config):
    record = spend(ledger, config)
    assert lines(record) == [  # the entity that spent most first, then its groups by spend
        (None, B, "gpt-4o", 10.0, 2),
        (None, A, "claude-opus-4-6", 5.0, 2),
        (None, A, "gpt-4o", 2.5, 3),
        (None, A, None, 0.125, 1),
    ]
    a_gpt, a_opus, a_unplaced = record["lines"][2], record["lines"][1], record["lines"][3]
    assert a_gpt["entity_alias"] == "alpha" and a_gpt["aliases"] == ["gpt4"] and a_gpt["cache_hits"] == 1
    assert (a_opus["failures"], a_opus["prompt_tokens"], a_opus["completion_tokens"]) == (1, 110, 55)
    assert a_unplaced["unresolved_models"] == ["mystery-model"]
    assert record["total_spend"] == pytest.approx(17.625) and record["total_requests"] == 8
    assert record["lines"][0]["share"] == pytest.approx(10.0 / 17.625, abs=1e-6)
    assert record["ignored_by_reason"] == {"empty api_key": 1, "failure": 1, "repeat job poll": 2}


def test_per_key_totals_equal_the_ledgers_attributed_sum(ledger, config):
    """The agreement the issue states: spend --by key --period total = SUM(spend) per key over attributed rows
    (successful, keyed, not a repeat poll, placed by the resolver), summed by the database itself."""
    engine = create_engine(ledger)
    with engine.connect() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                text('SELECT request_id FROM "LiteLLM_SpendLogs" WHERE call_type = \'aretrieve_batch\' ORDER BY "endTime"')
            )
        ]
        summed = dict(
            conn.execute(
                text(
                    "SELECT api_key, SUM(spend) FROM \"LiteLLM_SpendLogs\" WHERE status = 'success' AND api_key <> '' "
                    "AND model <> 'mystery-model' AND request_id NOT IN (:r2, :r3) GROUP BY api_key"
                ),
                {"r2": ids[1], "r3": ids[2]},
            ).all()
        )
    engine.dispose()
    got: dict[str, float] = {}
    for ln in spend(ledger, config)["lines"]:
        if ln["model_group"] is not None:
            got[ln["entity_id"]] = got.get(ln["entity_id"], 0.0) + ln["spend"]
    assert got == pytest.approx({k: float(v) for k, v in summed.items()}, abs=1e-9)
    assert got == pytest.approx({A: 7.5, B: 10.0}, abs=1e-9)


def test_by_team_and_by_tag(ledger, config):
    assert lines(spend(ledger, config, "--by", "team")) == [
        (None, None, "gpt-4o", 10.0, 2),  # key B's rows have no team
        (None, "team-x", "claude-opus-4-6", 5.0, 2),
        (None, "team-x", "gpt-4o", 2.5, 3),
        (None, "team-x", None, 0.125, 1),
    ]
    by_tag = spend(ledger, config, "--by", "tag")
    # batch: B's 4.0 + the charged poll 6.0; untagged: A's alias row 0.5 (NULL tags) and 2.0 + 3.0 + 0.125
    # (empty list); prod: 1.25 + 0.75; chat: 1.25. A two-tag request counts under each tag.
    assert lines(by_tag) == [
        (None, "batch", "gpt-4o", 10.0, 2),
        (None, None, "claude-opus-4-6", 5.0, 2),
        (None, None, "gpt-4o", 0.5, 1),
        (None, None, None, 0.125, 1),
        (None, "prod", "gpt-4o", 2.0, 2),
        (None, "chat", "gpt-4o", 1.25, 1),
    ]


def test_calendar_days_in_the_zone_across_a_dst_change(any_url, config):
    """Europe/Berlin moves from +1 to +2 at 2026-03-29 01:00 UTC. 23:30 UTC on the 28th is 00:30 on the 29th
    in Berlin (+1); 22:30 UTC on the 29th is 00:30 on the 30th (+2); 21:30 UTC on the 29th is 23:30 on the 29th."""
    backend = any_url.split(":")[0]
    url = build(
        any_url,
        [
            row(1.0, at=datetime(2026, 3, 28, 23, 30)),
            row(2.0, at=datetime(2026, 3, 29, 21, 30)),
            row(4.0, at=datetime(2026, 3, 29, 22, 30)),
        ],
    )
    berlin = spend(url, config, "--period", "day", "--timezone", "Europe/Berlin")
    assert lines(berlin) == [("2026-03-29", A, "gpt-4o", 3.0, 2), ("2026-03-30", A, "gpt-4o", 4.0, 1)], backend
    utc = spend(url, config, "--period", "day")
    assert lines(utc) == [("2026-03-28", A, "gpt-4o", 1.0, 1), ("2026-03-29", A, "gpt-4o", 6.0, 2)], backend
    # weeks start on Monday (the 23rd; in Berlin the 30th opens the next week), months on the 1st
    assert lines(spend(url, config, "--period", "week", "--timezone", "Europe/Berlin")) == [
        ("2026-03-23", A, "gpt-4o", 3.0, 2),
        ("2026-03-30", A, "gpt-4o", 4.0, 1),
    ], backend
    assert lines(spend(url, config, "--period", "month", "--timezone", "Pacific/Kiritimati")) == [  # +14: all on the 29th-30th
        ("2026-03-01", A, "gpt-4o", 7.0, 3)
    ], backend


def test_top_model_filter_and_formats(ledger, config):
    top = spend(ledger, config, "--top", "1")
    assert lines(top) == [(None, B, "gpt-4o", 10.0, 2)]
    assert top["omitted"] == {"entities": 1, "spend": pytest.approx(7.625), "requests": 6}
    assert lines(spend(ledger, config, "--model", "gpt4")) == [(None, A, "gpt-4o", 2.5, 3)]  # the alias finds its line
    assert [ln[:3] for ln in lines(spend(ledger, config, "--model", "gpt-4o"))] == [(None, B, "gpt-4o"), (None, A, "gpt-4o")]

    result = runner.invoke(app, ["spend", "--db", ledger, "--config", config, "--format", "csv"])
    assert result.exit_code == 0, result.output
    parsed = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["entity_id"], r["model_group"], float(r["spend"]), r["aliases"]) for r in parsed] == [
        (B, "gpt-4o", 10.0, ""),
        (A, "claude-opus-4-6", 5.0, ""),
        (A, "gpt-4o", 2.5, "gpt4"),
        (A, "", 0.125, ""),
    ]

    result = runner.invoke(app, ["spend", "--db", ledger, "--config", config, "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert (
        r"| total | alpha \(aaaaaaaa…\) | gpt-4o \(via alias gpt4\) | $2.5000 | 14.2% | 3 |" in result.stdout
    )  # Markdown-escaped

    result = runner.invoke(app, ["spend", "--db", ledger, "--config", config])  # the table
    assert result.exit_code == 0, result.output
    assert "claude-opus-4-6" in result.stdout and "total $17.6250 in 8 charged requests" in result.stdout


def test_bad_input_is_one_line_and_exit_2(ledger, config):
    for args, says in (
        (["--by", "org"], "--by"),
        (["--period", "year"], "--period"),
        (["--top", "0"], "--top"),
        (["--timezone", "Mars/Olympus"], "unknown timezone"),
    ):
        result = runner.invoke(app, ["spend", "--db", ledger, "--config", config, *args])
        assert result.exit_code == 2, (args, result.output)
        assert says in result.output


def test_sample_without_db(monkeypatch):
    """No --db: the embedded sample, whose charged rows (scan: 5,626 attributed + 67 unresolved) all appear."""
    result = runner.invoke(app, ["spend", "--format", "json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["total_requests"] == 5626 + 67
    assert sum(ln["requests"] for ln in record["lines"] if ln["model_group"] is None) == 67


# ---------------------------------------------------------------------------------------------
# The scan's `spend` lines: every (scope, entity, model group) the ledger charged, windows or not

SCAN_SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "auditor" / "scan.schema.json").read_text())


def scan_spend(url: str, config: str, *extra: str) -> list[dict]:
    result = runner.invoke(
        app,
        [
            "scan",
            "--db",
            url,
            "--config",
            config,
            "--now",
            "2026-04-01T00:00:00Z",
            "--format",
            "json",
            "--fail-on",
            "never",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    jsonschema.validate(record, SCAN_SCHEMA)
    return record["spend"]


def test_scan_spend_has_a_line_for_every_entity_and_group_with_null_budget_where_none_governs(ledger, config):
    """Key A has a 1d gpt-4o budget (one window: 1.25 + 0.75 = 2.0; its 0.5 through the proxy alias gpt4 is gated
    and charged by LiteLLM under the alias name, which no entry governs, so it is a line of its own with budget null);
    everything else no entry governs: a line per (scope, entity, group) with its total."""
    engine = create_engine(ledger)
    with engine.begin() as conn:
        conn.execute(
            verification_token.update()
            .where(verification_token.c.token == A)
            .values(model_max_budget={"gpt-4o": {"budget_limit": 100.0, "time_period": "1d"}})
        )
    engine.dispose()
    got = [
        (s["scope"], s["entity_id"], s["model_group"], s["budget_model"], round(s["logged_spend"], 9), s["requests"])
        for s in scan_spend(ledger, config)
    ]
    member = lambda user: f"{len(user)}:{user}:team-x"  # noqa: E731 - LiteLLM's team member id
    assert got == [
        ("key", A, "gpt-4o", "gpt-4o", 2.0, 2),  # the window
        ("key", A, "claude-opus-4-6", None, 5.0, 2),
        ("key", A, "gpt-4o", None, 0.5, 1),  # through the alias gpt4
        ("key", B, "gpt-4o", None, 10.0, 2),
        ("team", "team-x", "claude-opus-4-6", None, 5.0, 2),
        ("team", "team-x", "gpt-4o", None, 2.5, 3),
        ("user", "u1", "claude-opus-4-6", None, 5.0, 2),
        ("user", "u1", "gpt-4o", None, 2.5, 3),
        ("user", "u2", "gpt-4o", None, 10.0, 2),
        ("team_member", member("u1"), "claude-opus-4-6", None, 5.0, 2),
        ("team_member", member("u1"), "gpt-4o", None, 2.5, 3),
    ]
    # --key audits that key alone; --model keeps one group
    assert [(s["entity_id"], s["model_group"], s["budget_model"]) for s in scan_spend(ledger, config, "--key", "alpha")] == [
        (A, "gpt-4o", "gpt-4o"),
        (A, "claude-opus-4-6", None),
        (A, "gpt-4o", None),
    ]
    assert {s["model_group"] for s in scan_spend(ledger, config, "--model", "claude-opus-4-6")} == {"claude-opus-4-6"}


def test_on_the_sample_scan_spend_and_auditor_spend_agree_for_every_scope(any_url):
    """The sample deployment (budgets in every scope, an access-group entry, aliases): for every scope the scan's
    spend lines add up, per entity and per (entity, model group), to what `auditor spend --by SCOPE` charges it (an
    entry over several groups has a line per group in each of its windows)."""
    from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
    from auditor.sample import load_sample, sample_config_path

    with connect(DatabaseTarget(parse_database_url(any_url), "test"), read_only=False) as conn:
        load_sample(conn)
    config = str(sample_config_path())
    result = runner.invoke(
        app,
        ["scan", "--db", any_url, "--config", config, "--now", "2026-11-22T00:00:00Z", "--format", "json", "--fail-on", "never"],
    )
    record = json.loads(result.stdout)
    jsonschema.validate(record, SCAN_SCHEMA)
    assert sum(s["requests"] for s in record["spend"] if s["scope"] == "key") == record["rows"]["attributed"] == 5626
    pairs: dict[tuple, float] = defaultdict(float)
    entities: dict[tuple, float] = defaultdict(float)
    for s in record["spend"]:
        pairs[(s["scope"], s["entity_id"], s["model_group"])] += s["logged_spend"]
        entities[(s["scope"], s["entity_id"])] += s["logged_spend"]
    # premium-user's entry `premium` (an access group) charges two groups: each window has a line per group
    premium = [(s["model_group"], s["window_start"]) for s in record["spend"] if s["budget_model"] == "premium"]
    assert {group for group, _ in premium} == {"claude-opus-4-6", "claude-sonnet-4-5"} and len(premium) > len(
        set(w for _, w in premium)
    )
    assert not [s for s in record["spend"] if s["model_group"] is None]
    for scope in ("key", "team", "user", "end_user", "team_member"):
        lines_ = [ln for ln in spend(any_url, config, "--by", scope)["lines"] if ln["model_group"] and ln["entity_id"]]
        want_pairs = {(scope, ln["entity_id"], ln["model_group"]): ln["spend"] for ln in lines_}
        want_entities: dict[tuple, float] = defaultdict(float)
        for ln in lines_:
            want_entities[(scope, ln["entity_id"])] += ln["spend"]
        assert {k: v for k, v in entities.items() if k[0] == scope} == pytest.approx(dict(want_entities), abs=1e-9), scope
        assert {k: v for k, v in pairs.items() if k[0] == scope} == pytest.approx(want_pairs, abs=1e-9), scope
        assert len(want_pairs) > 0, scope


def test_request_tags_that_are_not_a_list_count_as_no_tags(any_url, config):
    """LiteLLM writes a JSON list; anything else (an object, a string, a number) is read as no tags instead of
    failing the statement (jsonb_array_elements_text raises on a non-array). Two tags on one row: counted under each."""
    url = build(any_url, [row(1.0, tags={"team": "x"}), row(2.0, tags="oops"), row(4.0, tags=7), row(8.0, tags=["ok", "ok2"])])
    assert lines(spend(url, config, "--by", "tag")) == [
        (None, "ok", "gpt-4o", 8.0, 1),
        (None, "ok2", "gpt-4o", 8.0, 1),
        (None, None, "gpt-4o", 7.0, 3),
    ]
