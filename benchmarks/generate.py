#!/usr/bin/env python3
"""Fill a PostgreSQL database with a realistic LiteLLM spend ledger, for benchmarking `auditor scan`.

    python benchmarks/generate.py --db postgresql://postgres@127.0.0.1:5432/auditor_bench --rows 10000000

What it writes (LiteLLM's own tables, created with `auditor.ledger.schema.metadata.create_all` when absent):

* LiteLLM_VerificationToken: `--keys` keys (default 2,000), 10% of them with a per-model budget
  (`model_max_budget`) in the shapes real proxies hold: `budget_limit`/`time_period` and
  `max_budget`/`budget_duration`, string amounts, word durations (`daily`, `monthly`), an access
  group (`premium`), a glob (`gpt-4o*`), and a few entries LiteLLM ignores (legacy float, `1y`).
  Which keys get budgets is stratified by traffic rank, so they carry about 10% of the rows.
* LiteLLM_ProxyModelTable: the two deployments added "through the UI"; LiteLLM_TeamTable, LiteLLM_UserTable.
* LiteLLM_SpendLogs: `--rows` rows over `--days` days (diurnal and weekly traffic shape), about 20
  deployments of 12 model groups plus an `anthropic/*` wildcard and an unconfigured local model. About
  3% failures (with LiteLLM's error_information), 4% cache hits (spend 0, `_cache_hit` request ids),
  5% of rows with an empty model_group (resolved through model_id), 1% with neither model_group nor
  model_id (resolved through the deployment string), 0.5% unresolvable, 0.2% key-less. Each row
  carries `metadata`, `messages`, `response` and `proxy_server_request` jsonb shaped like LiteLLM's
  (usage, model_map_information, hidden_params, request headers and body...), about
  `--payload-bytes` (default 6,000) of JSON text in all, with lognormal spread.

* What every LiteLLM 1.110 proxy writes besides the spend logs, filled in SQL after the load (litellm_writes):
  LiteLLM_DailyUserSpend, LiteLLM_DailyTeamSpend and LiteLLM_DailyEndUserSpend rolled up from the ledger
  as DBSpendUpdateWriter does (one row per entity, day, key, model, provider, MCP tool and endpoint; one
  heap pass for the three), and the scalar `spend` of keys, teams and users as the proxy holds it at the
  newest "endTime": since the current budget period began for the 25% of keys, 30% of teams and 10% of
  users with a calendar-aligned `budget_duration` (1d / 7d / 30d, `budget_reset_at` set), lifetime for
  the rest; keys' `total_spend` is lifetime. Those budgets (and 5% of the other keys) get a `max_budget`
  1.2-4x the entity's typical spend over a period, so the proxy would not have blocked them.

Rows are streamed with COPY (text format) in chunks of 10,000; nothing holds more than a chunk. Each
chunk draws from its own random stream seeded by (`--seed`, chunk number), so the data is a pure
function of the arguments, and `--resume` can continue an interrupted load from the last committed
batch. The spend-log indexes ("startTime", and (api_key, "startTime") which LiteLLM builds at
start-up) are dropped before the load and built after it, then every table is ANALYZEd.

`config.yaml` (the proxy config for these deployments) is written to `--config-out`; pass it to
`auditor scan --config`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from bisect import bisect_right
from datetime import datetime, timedelta
from itertools import accumulate
from pathlib import Path

import psycopg
from litellm_writes import assign_scalar_budgets, litellm_writes
from psycopg import sql

HERE = Path(__file__).resolve().parent
EPOCH = datetime(1970, 1, 1)
CHUNK_ROWS = 10_000
COMMIT_EVERY_CHUNKS = 50  # one COPY statement and commit per 500,000 rows

# ---------------------------------------------------------------------------------------------
# The deployment: ~20 deployments, 12 groups (two added through the UI), a wildcard.
# (group, deployment string, model_id, provider, api_base, source, weight within the group)
# ---------------------------------------------------------------------------------------------

DEPLOYMENTS = [
    (
        "gpt-4o",
        "azure/prod-gpt4o-eastus",
        "dep-gpt4o-azure-eastus",
        "azure",
        "https://acme-eastus.openai.azure.com/",
        "config",
        0.5,
    ),
    (
        "gpt-4o",
        "azure/prod-gpt4o-swedencentral",
        "dep-gpt4o-azure-sweden",
        "azure",
        "https://acme-sweden.openai.azure.com/",
        "config",
        0.3,
    ),
    ("gpt-4o", "openai/gpt-4o", "dep-gpt4o-openai", "openai", "https://api.openai.com/v1", "config", 0.2),
    ("gpt-4o-mini", "openai/gpt-4o-mini", "dep-gpt4o-mini-openai", "openai", "https://api.openai.com/v1", "config", 0.6),
    (
        "gpt-4o-mini",
        "azure/prod-gpt4o-mini-eastus",
        "dep-gpt4o-mini-azure",
        "azure",
        "https://acme-eastus.openai.azure.com/",
        "config",
        0.4,
    ),
    ("gpt-4.1", "openai/gpt-4.1", "dep-gpt41-openai", "openai", "https://api.openai.com/v1", "config", 1.0),
    (
        "o3-mini",
        "azure/prod-o3-mini-eastus2",
        "dep-o3-mini-azure",
        "azure",
        "https://acme-eastus2.openai.azure.com/",
        "config",
        1.0,
    ),
    (
        "claude-opus-4-6",
        "vertex_ai/claude-opus-4-6@default",
        "dep-opus-vertex",
        "vertex_ai",
        "https://us-east5-aiplatform.googleapis.com/v1",
        "config",
        1.0,
    ),
    (
        "claude-sonnet-4-5",
        "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "dep-sonnet-bedrock",
        "bedrock",
        "https://bedrock-runtime.us-east-1.amazonaws.com",
        "config",
        0.5,
    ),
    (
        "claude-sonnet-4-5",
        "anthropic/claude-sonnet-4-5-20250929",
        "dep-sonnet-anthropic",
        "anthropic",
        "https://api.anthropic.com/v1/messages",
        "config",
        0.3,
    ),
    (
        "claude-sonnet-4-5",
        "vertex_ai/claude-sonnet-4-5@20250929",
        "dep-sonnet-vertex",
        "vertex_ai",
        "https://us-east5-aiplatform.googleapis.com/v1",
        "config",
        0.2,
    ),
    (
        "claude-haiku-4-5",
        "anthropic/claude-haiku-4-5-20251001",
        "dep-haiku-anthropic",
        "anthropic",
        "https://api.anthropic.com/v1/messages",
        "config",
        1.0,
    ),
    (
        "gemini-2.5-pro",
        "vertex_ai/gemini-2.5-pro",
        "dep-gemini-pro-vertex",
        "vertex_ai",
        "https://us-central1-aiplatform.googleapis.com/v1",
        "config",
        1.0,
    ),
    (
        "gemini-2.5-flash",
        "vertex_ai/gemini-2.5-flash",
        "dep-gemini-flash-vertex",
        "vertex_ai",
        "https://us-central1-aiplatform.googleapis.com/v1",
        "config",
        0.7,
    ),
    (
        "gemini-2.5-flash",
        "gemini/gemini-2.5-flash",
        "dep-gemini-flash-studio",
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta",
        "config",
        0.3,
    ),
    (
        "text-embedding-3-large",
        "openai/text-embedding-3-large",
        "dep-embed-large-openai",
        "openai",
        "https://api.openai.com/v1",
        "config",
        1.0,
    ),
    (
        "deepseek-r1",
        "together_ai/deepseek-ai/DeepSeek-R1",
        "dep-deepseek-r1-together",
        "together_ai",
        "https://api.together.xyz/v1",
        "config",
        1.0,
    ),
    (
        "mistral-large",
        "mistral/mistral-large-latest",
        "0f3c9b2e-7d41-4a8e-b5c6-2e91d0a4f7b3",
        "mistral",
        "https://api.mistral.ai/v1",
        "db",
        1.0,
    ),
    (
        "llama-3.3-70b",
        "groq/llama-3.3-70b-versatile",
        "6a1d44c0-93be-4f57-8c1e-5b0f2d7e9a10",
        "groq",
        "https://api.groq.com/openai/v1",
        "db",
        1.0,
    ),
    # The wildcard: the requested name is the group, model_id is the wildcard deployment's.
    (
        "anthropic/claude-3-5-haiku-20241022",
        "anthropic/claude-3-5-haiku-20241022",
        "dep-anthropic-wildcard",
        "anthropic",
        "https://api.anthropic.com/v1/messages",
        "wildcard",
        1.0,
    ),
    # Called straight through, configured nowhere: the scan's unresolved rows.
    ("", "ollama/llama3.1:8b", "", "ollama", "http://10.20.0.15:11434", "none", 1.0),
]
PREMIUM = {"claude-opus-4-6", "claude-sonnet-4-5"}  # access group "premium"

# group -> (popularity among keys, USD per input token, USD per output token, mean prompt tokens, mean completion tokens)
GROUPS = {
    "gpt-4o": (10, 2.5e-06, 1e-05, 1800, 350),
    "gpt-4o-mini": (14, 1.5e-07, 6e-07, 1500, 300),
    "gpt-4.1": (5, 2e-06, 8e-06, 2200, 400),
    "o3-mini": (3, 1.1e-06, 4.4e-06, 1600, 900),
    "claude-opus-4-6": (3, 5e-06, 2.5e-05, 3000, 600),
    "claude-sonnet-4-5": (9, 3e-06, 1.5e-05, 2800, 500),
    "claude-haiku-4-5": (5, 1e-06, 5e-06, 1500, 300),
    "gemini-2.5-pro": (4, 1.25e-06, 1e-05, 2500, 500),
    "gemini-2.5-flash": (6, 3e-07, 2.5e-06, 1500, 300),
    "text-embedding-3-large": (3, 1.3e-07, 0.0, 600, 0),
    "deepseek-r1": (1, 3e-06, 7e-06, 1500, 1200),
    "mistral-large": (2, 2e-06, 6e-06, 1500, 300),
    "llama-3.3-70b": (2, 5.9e-07, 7.9e-07, 1200, 300),
    "anthropic/claude-3-5-haiku-20241022": (1, 8e-07, 4e-06, 1200, 250),
    "": (0.3, 0.0, 0.0, 1000, 250),  # ollama, unconfigured
}

SPEND_LOG_COLUMNS = [
    "request_id",
    "call_type",
    "api_key",
    "spend",
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "startTime",
    "endTime",
    "completionStartTime",
    "model",
    "model_id",
    "model_group",
    "custom_llm_provider",
    "api_base",
    "user",
    "metadata",
    "cache_hit",
    "cache_key",
    "request_tags",
    "team_id",
    "end_user",
    "requester_ip_address",
    "messages",
    "response",
    "proxy_server_request",
    "session_id",
    "status",
    "mcp_namespaced_tool_name",
    "organization_id",
    "agent_id",
    "request_duration_ms",
    "created_at",
    "updated_at",
    "litellm_call_id",
    "billing_agent_id",
]

SPEND_LOG_INDEXES = {
    "LiteLLM_SpendLogs_startTime_idx": '("startTime")',
    "LiteLLM_SpendLogs_api_key_startTime_idx": '(api_key, "startTime")',
}

FAILURE_RATE = 0.03
CACHE_HIT_RATE = 0.04
NO_GROUP_RATE = 0.05  # model_group empty, model_id set
NO_GROUP_NO_ID_RATE = 0.01  # both empty: only the deployment string says which group
KEYLESS_RATE = 0.002
BUDGET_KEY_SHARE = 0.10

ERRORS = [
    (
        "RateLimitError",
        "429",
        "litellm.RateLimitError: {P}Exception - Rate limit reached for requests. Please retry after 20 seconds.",
    ),
    ("RateLimitError", "429", "litellm.RateLimitError: {P}Exception - Resource exhausted. Please try again later."),
    ("Timeout", "408", "litellm.Timeout: APITimeoutError - Request timed out. Error_str: Request timed out."),
    (
        "ContextWindowExceededError",
        "400",
        "litellm.ContextWindowExceededError: {P}Exception - prompt is too long: 212043 tokens > 200000 maximum",
    ),
    ("APIConnectionError", "500", "litellm.APIConnectionError: {P}Exception - Connection error."),
    ("ServiceUnavailableError", "503", "litellm.ServiceUnavailableError: {P}Exception - Overloaded"),
    (
        "BadRequestError",
        "400",
        "litellm.BadRequestError: {P}Exception - Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
    ),
]

# ---------------------------------------------------------------------------------------------
# COPY text format helpers. Everything generated below is ASCII without tab, newline, CR or
# backslash except where written deliberately (`NL` is a JSON "\n" escaped for COPY).
# ---------------------------------------------------------------------------------------------

NL = "\\\\n"  # the two characters \n inside a JSON string, with COPY's backslash doubled
NULL = "\\N"


def copy_json(value: object) -> str:
    """A JSON value as one COPY text field."""
    return json.dumps(value, separators=(", ", ": ")).replace("\\", "\\\\")


def ts(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(sep=" ", timespec="milliseconds")


def to_ms(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(milliseconds=1)


# ---------------------------------------------------------------------------------------------
# Text: a corpus of pseudo-English with Zipf-distributed words, so the payloads compress roughly
# as prompts and completions do (pglz stores them at a bit over half their size).
# ---------------------------------------------------------------------------------------------

FUNCTION_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "this",
    "are",
    "or",
    "from",
    "at",
    "an",
    "not",
    "have",
    "which",
    "you",
    "but",
    "we",
    "can",
    "they",
    "all",
    "will",
    "one",
    "has",
    "been",
    "their",
    "if",
    "more",
    "when",
    "there",
    "so",
    "what",
    "about",
    "into",
    "than",
    "then",
    "them",
    "these",
    "its",
    "our",
    "out",
    "use",
    "only",
    "other",
    "also",
    "how",
    "each",
    "may",
    "should",
    "would",
    "could",
    "must",
    "new",
    "first",
    "any",
    "some",
    "such",
]
TECH_WORDS = [
    "customer",
    "order",
    "invoice",
    "account",
    "data",
    "model",
    "request",
    "response",
    "error",
    "service",
    "function",
    "table",
    "column",
    "query",
    "user",
    "report",
    "summary",
    "ticket",
    "issue",
    "refund",
    "shipping",
    "product",
    "price",
    "policy",
    "contract",
    "clause",
    "section",
    "document",
    "analysis",
    "result",
    "value",
    "field",
    "record",
    "schema",
    "endpoint",
    "client",
    "server",
    "cache",
    "latency",
    "budget",
    "team",
    "project",
    "meeting",
    "agenda",
    "email",
    "draft",
    "review",
    "code",
    "test",
    "deploy",
    "release",
    "feature",
    "bug",
    "fix",
    "update",
    "config",
    "key",
    "token",
    "metric",
    "dashboard",
    "chart",
    "region",
    "store",
    "payment",
    "subscription",
    "plan",
    "trial",
    "usage",
    "limit",
    "quota",
    "support",
    "agent",
]


def build_corpus(rng: random.Random, size: int = 1 << 21) -> tuple[str, list[int]]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou", "ea")]
    invented = sorted({"".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(6000)})
    vocabulary = FUNCTION_WORDS + TECH_WORDS + invented
    weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(vocabulary))]
    cum = list(accumulate(weights))
    parts: list[str] = []
    length = 0
    words = rng.choices(vocabulary, cum_weights=cum, k=size // 4)
    i = 0
    while length < size:
        n = rng.randint(6, 24)
        sentence = " ".join(words[i : i + n])
        i += n
        if i + 30 >= len(words):
            i = 0
        sentence = sentence[:1].upper() + sentence[1:] + rng.choice((".", ".", ".", "?", ":"))
        if rng.random() < 0.03:
            sentence += " " + NL + NL + "-"
        elif rng.random() < 0.05:
            sentence += " " + NL + "*"
        parts.append(sentence)
        length += len(sentence) + 1
    corpus = " ".join(parts)
    spaces = [i for i, ch in enumerate(corpus) if ch == " "]
    return corpus, spaces


class Text:
    def __init__(self, rng: random.Random) -> None:
        self.corpus, self.spaces = build_corpus(rng)
        self.limit = len(self.corpus) - 70_000

    def take(self, rng: random.Random, n: int) -> str:
        """About n characters of corpus, cut at word boundaries (never inside an escape)."""
        if n <= 0:
            return ""
        n = min(n, 60_000)
        start = self.spaces[bisect_right(self.spaces, int(rng.random() * self.limit))] + 1
        end = self.spaces[bisect_right(self.spaces, start + n) - 1]
        return self.corpus[start:end] if end > start else self.corpus[start : start + 1]


# ---------------------------------------------------------------------------------------------
# Keys, budgets, teams, users
# ---------------------------------------------------------------------------------------------

MODEL_MAP_PARAMS = copy_json(
    [
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "max_tokens",
        "max_completion_tokens",
        "modalities",
        "prediction",
        "n",
        "presence_penalty",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "function_call",
        "functions",
        "max_retries",
        "extra_headers",
        "parallel_tool_calls",
        "response_format",
        "user",
        "web_search_options",
    ]
)


class Key:
    __slots__ = (
        "token",
        "alias",
        "key_name",
        "user",
        "email",
        "team",
        "team_alias",
        "org",
        "end_users",
        "groups",
        "group_cum",
        "weight",
        "budget",
        "ip",
        "agent",
        "session_rate",
        "tags",
        "meta_head",
    )


def make_keys(rng: random.Random, n_keys: int, teams: list[tuple[str, str]], users: list[str], seed: str) -> list[Key]:
    groups = [g for g in GROUPS if g]
    popularity = [GROUPS[g][0] for g in groups]
    keys = []
    for i in range(n_keys):
        k = Key()
        k.token = hashlib.sha256(f"sk-bench-{seed}-{i}".encode()).hexdigest()
        team_id, team_alias = teams[rng.randrange(len(teams))]
        kind = rng.choice(("svc", "svc", "app", "agent", "batch", "dev", "notebook", "ci"))
        k.alias = f"{team_alias}-{kind}-{i:04d}"
        k.key_name = f"sk-...{hashlib.md5(k.token.encode()).hexdigest()[:4]}"
        k.user = users[rng.randrange(len(users))]
        k.email = f"{k.user.removeprefix('u-')}@acme.example"
        k.team, k.team_alias = team_id, team_alias
        k.org = "org-acme" if rng.random() < 0.7 else None
        k.end_users = [f"customer-{rng.randrange(5000):04d}" for _ in range(rng.randint(1, 40))] if kind in ("app", "svc") else []
        n_groups = min(len(groups), 1 + int(rng.expovariate(0.7)))
        chosen: list[str] = []
        while len(chosen) < n_groups:
            g = rng.choices(groups, weights=popularity)[0]
            if g not in chosen:
                chosen.append(g)
        if rng.random() < 0.02:
            chosen.append("")  # also calls the unconfigured local model
        shares = [rng.expovariate(1.0) + 0.05 for _ in chosen]
        k.groups = chosen
        k.group_cum = list(accumulate(shares))
        k.weight = rng.lognormvariate(0.0, 1.6)  # traffic: a few keys carry most of it
        k.budget = None
        k.ip = f"10.{rng.randrange(8, 40)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        k.agent = rng.choice(
            (
                "OpenAI/Python 1.54.3",
                "OpenAI/Python 1.82.0",
                "OpenAI/JS 4.73.1",
                "AsyncOpenAI/Python 1.99.1",
                "langchain-openai/0.3.7",
                "litellm/1.110.2",
                "anthropic-sdk-python/0.49.0",
                "curl/8.5.0",
            )
        )
        k.session_rate = 0.6 if kind in ("agent", "app") else 0.1
        k.tags = copy_json(
            [f"team:{team_alias}", f"env:{rng.choice(('prod', 'prod', 'staging', 'dev'))}"] if rng.random() < 0.5 else []
        )
        k.meta_head = None
        keys.append(k)
    return keys


def expected_spend_per_row(group: str) -> float:
    _, pin, pout, tin, tout = GROUPS[group]
    return (pin * tin + pout * tout) * (1 - FAILURE_RATE - CACHE_HIT_RATE)


PERIODS = [
    ("1d", 1.0),
    ("1d", 1.0),
    ("1d", 1.0),
    ("daily", 1.0),
    ("7d", 7.0),
    ("7d", 7.0),
    ("30d", 30.0),
    ("monthly", 30.0),
    ("1h", 1 / 24),
    ("12h", 0.5),
]


def assign_budgets(rng: random.Random, keys: list[Key], rows: int, days: int) -> None:
    """10% of keys, stratified by traffic rank (every 10th key by weight), get a per-model budget.

    Limits are set from the key's expected spend in the period, between ~0.5x and ~4x of it, so
    some windows go over budget and most do not.
    """
    total_weight = sum(k.weight for k in keys)
    ranked = sorted(range(len(keys)), key=lambda i: -keys[i].weight)
    step = round(1 / BUDGET_KEY_SHARE)
    offset = rng.randrange(step)
    for i in ranked[offset::step]:
        k = keys[i]
        rows_per_day = rows * k.weight / total_weight / days
        total_share = k.group_cum[-1]
        shares = {
            g: (c - (k.group_cum[j - 1] if j else 0.0)) / total_share for j, (g, c) in enumerate(zip(k.groups, k.group_cum))
        }
        budget: dict[str, object] = {}
        candidates = [g for g in k.groups if g]
        n_entries = min(len(candidates), rng.choice((1, 1, 1, 2, 2, 3)))
        for g in rng.sample(candidates, n_entries) if candidates else []:
            period, period_days = rng.choice(PERIODS)
            expected = rows_per_day * shares[g] * expected_spend_per_row(g) * period_days
            limit = round(max(0.01, expected * rng.lognormvariate(0.5, 0.6)), 2)
            name = g
            if g in PREMIUM and rng.random() < 0.3:
                name = "premium"  # access group: one counter for opus and sonnet
            elif g.startswith("gpt-4o") and rng.random() < 0.15:
                name = "gpt-4o*"  # glob (1.109+)
            style = rng.random()
            if style < 0.6:
                entry: object = {"budget_limit": limit, "time_period": period}
            elif style < 0.8:
                entry = {"max_budget": limit, "budget_duration": period}
            elif style < 0.95:
                entry = {"budget_limit": f"{limit:.2f}", "time_period": period}  # /key/update stores strings
            elif style < 0.975:
                entry = limit  # legacy float: 1.99+ ignores it
            else:
                entry = {"budget_limit": limit, "time_period": "1y"}  # not a LiteLLM duration
            budget.setdefault(name, entry)
        k.budget = budget or None


def proxy_config_yaml() -> str:
    lines = [
        "# LiteLLM proxy config of the benchmark deployment (written by benchmarks/generate.py).",
        "# mistral-large and llama-3.3-70b were added through the UI: they live in LiteLLM_ProxyModelTable.",
        "",
        "model_list:",
    ]
    for group, model, model_id, provider, _api_base, source, _ in DEPLOYMENTS:
        if source != "config":
            continue
        lines += [f"  - model_name: {group}", "    litellm_params:", f'      model: "{model}"']
        if provider == "azure":
            lines += [
                "      api_base: os.environ/AZURE_API_BASE",
                "      api_key: os.environ/AZURE_API_KEY",
                '      api_version: "2024-10-21"',
            ]
        elif provider == "vertex_ai":
            lines += ["      vertex_project: acme-llm-prod", "      vertex_credentials: os.environ/VERTEX_CREDENTIALS_JSON"]
        elif provider == "bedrock":
            lines += ["      aws_region_name: us-east-1"]
        else:
            lines += [f"      api_key: os.environ/{provider.upper()}_API_KEY"]
        lines += ["    model_info:", f"      id: {model_id}"]
        if group in PREMIUM:
            lines += ["      access_groups:", "        - premium"]
    lines += [
        '  - model_name: "anthropic/*"',
        "    litellm_params:",
        '      model: "anthropic/*"',
        "      api_key: os.environ/ANTHROPIC_API_KEY",
        "    model_info:",
        "      id: dep-anthropic-wildcard",
        "",
        "router_settings:",
        "  routing_strategy: simple-shuffle",
        "  num_retries: 2",
        "  model_group_alias:",
        "    gpt4: gpt-4o",
        "  redis_host: os.environ/REDIS_HOST",
        "  redis_port: os.environ/REDIS_PORT",
        "",
        "general_settings:",
        "  master_key: os.environ/LITELLM_MASTER_KEY",
        "  database_url: os.environ/DATABASE_URL",
        "  store_model_in_db: true",
        "  store_prompts_in_spend_logs: true",
        '  maximum_spend_logs_retention_period: "90d"',
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Spend-log rows
# ---------------------------------------------------------------------------------------------


class World:
    """Everything fixed by the seed: keys, deployments, text, the traffic curve."""

    def __init__(self, args: argparse.Namespace) -> None:
        rng = random.Random(f"{args.seed}:world")
        self.seed = args.seed
        self.rows = args.rows
        self.days = args.days
        self.end = datetime.fromisoformat(args.end)
        self.start = self.end - timedelta(days=args.days)
        self.teams = [
            (f"team-{name}", name)
            for name in (
                "platform",
                "data",
                "search",
                "support",
                "growth",
                "finance",
                "legal",
                "mobile",
                "web",
                "infra",
                "risk",
                "ml",
                "ops",
                "sales",
                "marketing",
                "research",
                "security",
                "billing",
                "partners",
                "hr",
            )
        ]
        self.users = [
            f"u-{rng.choice('abcdefghijklmnopqrstuvwxyz')}{rng.choice('aeiou')}{rng.choice('bcdfghklmnprst')}{i:03d}"
            for i in range(400)
        ]
        self.keys = make_keys(rng, args.keys, self.teams, self.users, args.seed)
        assign_budgets(rng, self.keys, args.rows, args.days)
        self.scalar_budgets = assign_scalar_budgets(
            random.Random(f"{args.seed}:scalar"), [k.token for k in self.keys], [t for t, _ in self.teams], self.users
        )
        self.key_cum = list(accumulate(k.weight for k in self.keys))
        self.text = Text(rng)
        self.by_group: dict[str, list[tuple]] = {}
        for dep in DEPLOYMENTS:
            self.by_group.setdefault(dep[0], []).append(dep)
        self.dep_cum = {g: list(accumulate(d[6] for d in deps)) for g, deps in self.by_group.items()}
        self.model_map = {g: self._model_map(g) for g in GROUPS}
        # traffic curve: hourly weights (weekday business-hours peak, quiet weekends), as a CDF
        weights = []
        for h in range(args.days * 24):
            at = self.start + timedelta(hours=h)
            day = 0.45 if at.weekday() >= 5 else 1.0
            hour = 0.35 + math.exp(-((at.hour - 14.5) ** 2) / 18.0) + 0.3 * math.exp(-((at.hour - 3) ** 2) / 8.0)
            weights.append(day * hour)
        total = sum(weights)
        self.hour_cdf = [c / total for c in accumulate(weights)]
        self.hour_w = [w / total for w in weights]
        self.start_ms = to_ms(self.start)
        # the fixed part of a row's JSON, to size the variable text against --payload-bytes
        self.payload_target = args.payload_bytes
        self.text_budget = None

    def _model_map(self, group: str) -> str:
        _, pin, pout, _, _ = GROUPS[group]
        provider = self.by_group[group][0][3]
        mode = "embedding" if "embedding" in group else "chat"
        return (
            f'{{"model_map_key": "{group or "ollama/llama3.1:8b"}", "model_map_value": {{"key": "{group or "ollama/llama3.1:8b"}", '
            f'"max_tokens": 16384, "max_input_tokens": 128000, "max_output_tokens": 16384, '
            f'"input_cost_per_token": {pin}, "output_cost_per_token": {pout}, "cache_read_input_token_cost": {pin / 10}, '
            f'"cache_creation_input_token_cost": null, "input_cost_per_token_batches": {pin / 2}, "output_cost_per_token_batches": {pout / 2}, '
            f'"litellm_provider": "{provider}", "mode": "{mode}", "supports_function_calling": true, '
            f'"supports_parallel_function_calling": true, "supports_vision": true, "supports_prompt_caching": true, '
            f'"supports_response_schema": true, "supports_system_messages": true, "supports_tool_choice": true, '
            f'"supports_web_search": false, "supports_reasoning": false, "supports_pdf_input": true, '
            f'"supports_audio_input": false, "supports_audio_output": false, "supports_native_streaming": null, '
            f'"tpm": null, "rpm": null, "supported_openai_params": {MODEL_MAP_PARAMS}}}}}'
        )

    def chunk_lines(self, chunk: int) -> tuple[list[str], int]:
        """The COPY lines of rows [chunk * CHUNK_ROWS, ...), and their jsonb payload bytes."""
        if self.text_budget is None:
            self.text_budget = self._calibrate()
        first = chunk * CHUNK_ROWS
        return self._rows(
            random.Random(f"{self.seed}:chunk:{chunk}"), first, min(CHUNK_ROWS, self.rows - first), self.text_budget
        )

    def _calibrate(self) -> int:
        """The text budget per row that brings the four jsonb payloads to about --payload-bytes on average."""
        probe = 2000

        def measure(budget: int) -> float:
            return self._rows(random.Random(f"{self.seed}:calibrate"), 0, probe, budget)[1] / probe

        fixed = measure(0)
        guess = max(100, self.payload_target - int(fixed))
        slope = (measure(guess) - fixed) / guess
        return max(0, int((self.payload_target - fixed) / slope)) if slope > 0 else 0

    def _rows(self, rng: random.Random, first: int, n: int, budget: int) -> tuple[list[str], int]:
        keys = rng.choices(self.keys, cum_weights=self.key_cum, k=n)
        text = self.text
        lines: list[str] = []
        payload = 0
        hour_cdf, hour_w, start_ms, N = self.hour_cdf, self.hour_w, self.start_ms, self.rows
        for j in range(n):
            i = first + j
            k = keys[j]
            # when: row i of N along the traffic curve (monotone in i)
            u = min((i + rng.random()) / N, 1.0)
            h = min(bisect_right(hour_cdf, u), len(hour_cdf) - 1)
            before = hour_cdf[h - 1] if h else 0.0
            start = start_ms + h * 3_600_000 + int(min(max((u - before) / hour_w[h], 0.0), 0.999999) * 3_600_000)
            group = k.groups[bisect_right(k.group_cum, rng.random() * k.group_cum[-1])] if len(k.groups) > 1 else k.groups[0]
            deps = self.by_group[group]
            dep = deps[bisect_right(self.dep_cum[group], rng.random() * self.dep_cum[group][-1])] if len(deps) > 1 else deps[0]
            _, model, model_id, provider, api_base, _, _ = dep
            _, pin, pout, tin, tout = GROUPS[group]
            embedding = "embedding" in group
            r = rng.random()
            failed = r < FAILURE_RATE
            cache_hit = not failed and r < FAILURE_RATE + CACHE_HIT_RATE
            prompt = max(8, int(rng.lognormvariate(0, 0.8) * tin * 0.73))
            completion = 0 if (failed or embedding) else max(1, int(rng.lognormvariate(0, 0.7) * tout * 0.78))
            spend = 0.0 if (failed or cache_hit) else prompt * pin + completion * pout
            latency = 40 + int(rng.lognormvariate(0, 0.6) * (300 + completion * 18)) if not cache_hit else rng.randint(3, 40)
            end = start + latency
            flush = end + rng.randint(200, 60_000)
            # names as the row records them
            model_group, row_model_id = group, model_id
            x = rng.random()
            if x < NO_GROUP_RATE:
                model_group = ""
            elif x < NO_GROUP_RATE + NO_GROUP_NO_ID_RATE:
                model_group, row_model_id = "", ""
            if k.budget is None and rng.random() < KEYLESS_RATE:
                api_key, alias, user, team = "", None, None, None
            else:
                api_key, alias, user, team = k.token, k.alias, k.user, k.team
            end_user = k.end_users[rng.randrange(len(k.end_users))] if k.end_users and rng.random() < 0.7 else ""
            request_id = f"{rng.getrandbits(128):032x}"
            request_id = f"chatcmpl-{request_id[:8]}-{request_id[8:12]}-{request_id[12:16]}-{request_id[16:20]}-{request_id[20:]}"
            call_id = f"{rng.getrandbits(128):032x}"
            call_id = f"{call_id[:8]}-{call_id[8:12]}-4{call_id[13:16]}-a{call_id[17:20]}-{call_id[20:]}"
            if cache_hit:
                request_id += f"_cache_hit{end / 1000:.6f}"
            session = f"sess-{k.token[:6]}-{(start // 1_800_000) % 100000:05d}" if rng.random() < k.session_rate else None
            # payload text, lognormal around the target
            scale = rng.lognormvariate(-0.18, 0.6)
            system_text = text.take(rng, int(budget * 0.12 * scale))
            user_text = text.take(rng, int(budget * 0.18 * scale))
            answer = "" if (failed or embedding) else text.take(rng, int(budget * 0.40 * scale))
            status = "failure" if failed else "success"
            cached_tokens = prompt if cache_hit else (int(prompt * rng.random() * 0.6) if rng.random() < 0.3 else 0)
            usage = (
                f'{{"total_tokens": {prompt + completion}, "prompt_tokens": {prompt}, "completion_tokens": {completion}, '
                f'"prompt_tokens_details": {{"cached_tokens": {cached_tokens}, "audio_tokens": null}}, '
                f'"completion_tokens_details": {{"reasoning_tokens": 0, "audio_tokens": null, "accepted_prediction_tokens": null, "rejected_prediction_tokens": null}}}}'
            )
            if failed:
                cls, code, message = ERRORS[rng.randrange(len(ERRORS))]
                message = message.replace("{P}", provider.capitalize())
                error = (
                    f'{{"error_code": "{code}", "error_class": "{cls}", "llm_provider": "{provider}", "error_message": "{message}", '
                    f'"traceback": "Traceback (most recent call last):{NL}  File \\\\"/usr/lib/python3.13/site-packages/litellm/main.py\\\\", line 553, in acompletion{NL}'
                    f'    response = await init_response{NL}  File \\\\"/usr/lib/python3.13/site-packages/litellm/llms/custom_httpx/llm_http_handler.py\\\\", line 272, in async_completion{NL}'
                    f'    response = await self._make_common_async_call({NL}litellm.{cls}: {message}{NL}"}}'
                )
            else:
                error = '{"error_code": "", "error_class": "", "llm_provider": "", "error_message": "", "traceback": ""}'
            cost_in, cost_out = prompt * pin, completion * pout
            metadata = (
                f'{{"batch_models": null, "usage_object": {usage}, "user_api_key": "{api_key}", "applied_guardrails": [], '
                f'"user_api_key_alias": {json_str(alias)}, "user_api_key_org_id": {json_str(k.org)}, "user_api_key_team_id": {json_str(team)}, '
                f'"user_api_key_user_id": {json_str(user)}, "user_api_key_team_alias": {json_str(k.team_alias if team else None)}, '
                f'"user_api_key_user_email": {json_str(k.email if user else None)}, "user_api_key_end_user_id": {json_str(end_user or None)}, '
                f'"user_api_key_request_route": "{"/v1/embeddings" if embedding else "/v1/chat/completions"}", "spend_logs_metadata": null, '
                f'"requester_ip_address": "{k.ip}", "requester_metadata": {{}}, "prompt_management_metadata": null, '
                f'"mcp_tool_call_metadata": null, "vector_store_request_metadata": null, "model_map_information": {self.model_map[group]}, '
                f'"additional_usage_values": {{"cache_read_input_tokens": {cached_tokens}, "cache_creation_input_tokens": 0}}, '
                f'"hidden_params": {{"model_id": "{model_id}", "cache_key": null, "api_base": "{api_base}", "response_cost": {spend}, '
                f'"litellm_overhead_time_ms": {rng.randint(2, 40)}, "additional_headers": {{"llm_provider-x-ratelimit-remaining-requests": "{rng.randint(100, 9999)}", '
                f'"llm_provider-x-ratelimit-remaining-tokens": "{rng.randint(10_000, 2_000_000)}", "llm_provider-x-request-id": "req_{call_id[:18]}"}}, '
                f'"litellm_model_name": "{model}", "batch_models": null}}, "status": "{status}", "error_information": {error}, '
                f'"cost_breakdown": {{"input_cost": {cost_in}, "output_cost": {cost_out}, "total_cost": {spend}, "tool_usage_cost": 0.0}}, '
                f'"guardrail_information": null, "attempted_retries": 0, "max_retries": 2, "cold_storage_object_key": null}}'
            )
            if embedding:
                messages = f'{{"input": ["{user_text}"]}}'
            else:
                messages = f'[{{"role": "system", "content": "{system_text}"}}, {{"role": "user", "content": "{user_text}"}}]'
            if failed:
                response = "{}"
            elif embedding:
                response = f'{{"object": "list", "model": "{model}", "data": [{{"object": "embedding", "index": 0, "embedding": "<omitted>"}}], "usage": {usage}}}'
            else:
                response = (
                    f'{{"id": "{request_id}", "created": {end // 1000}, "model": "{model.split("/", 1)[-1]}", "object": "chat.completion", '
                    f'"system_fingerprint": "fp_{call_id[:10]}", "choices": [{{"finish_reason": "stop", "index": 0, "message": '
                    f'{{"content": "{answer}", "role": "assistant", "tool_calls": null, "function_call": null, "annotations": []}}}}], '
                    f'"usage": {usage}}}'
                )
            proxy_request = (
                f'{{"url": "http://litellm.internal:4000{"/v1/embeddings" if embedding else "/v1/chat/completions"}", "method": "POST", '
                f'"headers": {{"host": "litellm.internal:4000", "accept": "application/json", "user-agent": "{k.agent}", '
                f'"content-type": "application/json", "x-stainless-lang": "python", "x-stainless-retry-count": "0", '
                f'"x-forwarded-for": "{k.ip}", "content-length": "{len(system_text) + len(user_text) + 180}"}}, '
                f'"body": {{"model": "{group or model}", '
                + (
                    f'"input": ["{user_text}"]'
                    if embedding
                    else f'"messages": {messages}, "temperature": 0.2, "max_tokens": 4096, "stream": false'
                )
                + f', "user": {json_str(end_user or None)}}}}}'
            )
            payload += len(metadata) + len(messages) + len(response) + len(proxy_request)
            lines.append(
                "\t".join(
                    (
                        request_id,
                        "aembedding" if embedding else "acompletion",
                        api_key,
                        repr(spend),
                        str(prompt + completion),
                        str(prompt),
                        str(completion),
                        ts(start),
                        ts(end),
                        ts(start + min(latency, 40 + latency // 8)),
                        model,
                        row_model_id,
                        model_group,
                        provider,
                        api_base,
                        user or "",
                        metadata,
                        "True" if cache_hit else "False",
                        "" if not cache_hit else hashlib.md5(request_id.encode()).hexdigest(),
                        k.tags,
                        team or NULL,
                        end_user,
                        k.ip,
                        messages,
                        response,
                        proxy_request,
                        session or NULL,
                        status,
                        NULL,
                        k.org or NULL,
                        NULL,
                        str(latency),
                        ts(flush),
                        ts(flush),
                        call_id,
                        NULL,
                    )
                )
            )
        return lines, payload


def json_str(value: str | None) -> str:
    return "null" if value is None else f'"{value}"'


# ---------------------------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------------------------


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://").replace("postgres://", "postgresql://")


def ensure_database(url: str) -> None:
    """CREATE DATABASE when the target does not exist (through the server's `postgres` database)."""
    info = psycopg.conninfo.conninfo_to_dict(libpq_url(url))
    name = info.get("dbname")
    try:
        psycopg.connect(libpq_url(url)).close()
        return
    except psycopg.OperationalError as error:
        if f'database "{name}" does not exist' not in str(error):
            raise
    admin = psycopg.conninfo.make_conninfo(libpq_url(url), dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    print(f"created database {name}", file=sys.stderr)


def create_tables(url: str) -> None:
    from sqlalchemy import create_engine

    from auditor.ledger.schema import metadata

    engine = create_engine(libpq_url(url).replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            metadata.create_all(conn, checkfirst=True)
    finally:
        engine.dispose()


def write_reference_tables(conn: psycopg.Connection, world: World) -> None:
    created = "2026-06-01 09:00:00.000"
    with conn.cursor() as cur:
        for team_id, alias in world.teams:
            cur.execute(
                'INSERT INTO "LiteLLM_TeamTable" (team_id, team_alias, organization_id, admins, members, members_with_roles, metadata, '
                "spend, models, blocked, created_at, updated_at, model_spend, model_max_budget, team_member_permissions, policies, "
                "allow_team_guardrail_config, access_group_ids, default_team_member_models, router_settings) "
                "VALUES (%s, %s, 'org-acme', '{}', '{}', '[]', '{}', 0, '{}', false, %s, %s, '{}', '{}', '{}', '{}', false, '{}', '{}', '{}')",
                (team_id, alias, created, created),
            )
        for user in world.users:
            cur.execute(
                'INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, spend, metadata, model_spend, model_max_budget, '
                "teams, models, allowed_cache_controls, policies, created_at, updated_at) "
                "VALUES (%s, %s, 'internal_user', 0, '{}', '{}', '{}', '{}', '{}', '{}', '{}', %s, %s)",
                (user, f"{user.removeprefix('u-')}@acme.example", created, created),
            )
        for group, model, model_id, provider, _, source, _ in DEPLOYMENTS:
            if source == "db":
                cur.execute(
                    'INSERT INTO "LiteLLM_ProxyModelTable" (model_id, model_name, litellm_params, model_info, created_at, created_by, '
                    "updated_at, updated_by, blocked) VALUES (%s, %s, %s, %s, %s, 'u-admin', %s, 'u-admin', false)",
                    (
                        model_id,
                        group,
                        json.dumps({"model": model, "api_key": f"os.environ/{provider.upper()}_API_KEY"}),
                        json.dumps({"id": model_id, "db_model": True, "mode": "chat"}),
                        created,
                        created,
                    ),
                )
        for k in world.keys:
            cur.execute(
                'INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, soft_budget_cooldown, spend, models, aliases, '
                "config, user_id, team_id, permissions, metadata, allowed_cache_controls, model_spend, model_max_budget, "
                "organization_id, created_at, created_by, updated_at, updated_by, allowed_routes, policies, access_group_ids, "
                "router_settings, budget_fallbacks, total_spend) VALUES (%s, %s, %s, false, 0, '{}', '{}', '{}', %s, %s, '{}', '{}', "
                "'{}', '{}', %s, %s, %s, %s, %s, %s, '{}', '{}', '{}', '{}', '{}', 0)",
                (
                    k.token,
                    k.key_name,
                    k.alias,
                    k.user,
                    k.team,
                    json.dumps(k.budget or {}),
                    k.org,
                    created,
                    k.user,
                    created,
                    k.user,
                ),
            )


def spend_log_rows(conn: psycopg.Connection) -> int:
    return conn.execute('SELECT count(*) FROM "LiteLLM_SpendLogs"').fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument("--db", required=True, help="postgresql://USER@HOST:PORT/DB (created if it does not exist)")
    parser.add_argument("--rows", type=int, required=True, help="spend-log rows to write")
    parser.add_argument("--keys", type=int, default=2000, help="virtual keys (default 2000; 10%% get per-model budgets)")
    parser.add_argument("--days", type=int, default=90, help="days of traffic, ending at --end (default 90)")
    parser.add_argument(
        "--end", default="2026-11-22T00:00:00", help="end of the traffic, naive UTC (default 2026-11-22T00:00:00)"
    )
    parser.add_argument("--seed", default="1", help="random seed (default 1); same arguments, same rows")
    parser.add_argument(
        "--payload-bytes",
        type=int,
        default=6000,
        help="average JSON text of metadata+messages+response+proxy_server_request per row (default 6000)",
    )
    parser.add_argument(
        "--config-out", default=str(HERE / "config.yaml"), help="where to write the proxy config (default benchmarks/config.yaml)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted load (same arguments) from its last commit"
    )
    args = parser.parse_args(argv)
    if args.rows < 0 or args.keys < 10 or args.days < 1:
        parser.error("--rows >= 0, --keys >= 10, --days >= 1")

    began = time.monotonic()
    Path(args.config_out).write_text(proxy_config_yaml(), encoding="utf-8")
    world = World(args)
    url = libpq_url(args.db)
    ensure_database(url)
    create_tables(url)
    n_chunks = math.ceil(args.rows / CHUNK_ROWS)
    with psycopg.connect(url) as conn:
        existing = spend_log_rows(conn)
        if existing and not args.resume:
            print(
                f"{args.db}: LiteLLM_SpendLogs already holds {existing:,} rows; drop the database, or pass --resume "
                "to continue a load made with the same arguments",
                file=sys.stderr,
            )
            return 2
        if existing % (CHUNK_ROWS * COMMIT_EVERY_CHUNKS) and existing != args.rows:
            print(f"{existing:,} rows is not a whole number of batches: not a load of this generator", file=sys.stderr)
            return 2
        if not existing:
            write_reference_tables(conn, world)
        for index in SPEND_LOG_INDEXES:
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index)))
        conn.commit()
        first_chunk = existing // CHUNK_ROWS
        budget_tokens = {k.token for k in world.keys if k.budget}
        print(
            f"{len(world.keys)} keys, {len(budget_tokens)} with per-model budgets; writing rows "
            f"{existing:,}..{args.rows:,} ({args.days} days to {args.end}), seed {args.seed!r}",
            file=sys.stderr,
        )
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier("LiteLLM_SpendLogs"), sql.SQL(", ").join(map(sql.Identifier, SPEND_LOG_COLUMNS))
        )
        written, payload, t0 = existing, 0, time.monotonic()
        chunk = first_chunk
        while chunk < n_chunks:
            batch_end = min(n_chunks, (chunk // COMMIT_EVERY_CHUNKS + 1) * COMMIT_EVERY_CHUNKS)
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for c in range(chunk, batch_end):
                    lines, bytes_ = world.chunk_lines(c)
                    for at in range(0, len(lines), 500):  # ~3 MB a write: memory stays at one chunk
                        copy.write(("\n".join(lines[at : at + 500]) + "\n").encode())
                    written += len(lines)
                    del lines
                    payload += bytes_
            conn.commit()
            chunk = batch_end
            rate = (written - existing) / max(1e-9, time.monotonic() - t0)
            eta = (args.rows - written) / rate if rate else 0
            print(
                f"{written:,}/{args.rows:,} rows, {rate:,.0f} rows/s, avg jsonb text {payload / max(1, written - existing):,.0f} B/row, "
                f"eta {eta / 60:.1f} min",
                file=sys.stderr,
                flush=True,
            )
        load_s = time.monotonic() - t0
        conn.autocommit = True
        t1 = time.monotonic()
        for index, columns in SPEND_LOG_INDEXES.items():
            conn.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} " + columns).format(
                    sql.Identifier(index), sql.Identifier("LiteLLM_SpendLogs")
                )
            )
        index_s = time.monotonic() - t1
        t2 = time.monotonic()
        conn.execute("ANALYZE")
        analyze_s = time.monotonic() - t2
        print(f"rollups and scalar spend: {litellm_writes(conn, world.scalar_budgets)}", file=sys.stderr, flush=True)
        size = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('\"LiteLLM_SpendLogs\"')), "
            "pg_size_pretty(pg_relation_size('\"LiteLLM_SpendLogs\"')), pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()
        budget_rows = (
            conn.execute('SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = ANY(%s)', (sorted(budget_tokens),)).fetchone()[
                0
            ]
            if args.rows <= 1_000_000
            else None
        )
    print(
        f"done: {args.rows:,} rows in {load_s / 60:.1f} min (+{index_s / 60:.1f} min indexes, {analyze_s:.0f} s ANALYZE, "
        f"{(time.monotonic() - began) / 60:.1f} min in all); "
        f"avg jsonb text this run {payload / max(1, args.rows - existing):,.0f} B/row; "
        f"LiteLLM_SpendLogs {size[0]} (heap {size[1]}), database {size[2]}"
        + (f"; rows of budgeted keys {budget_rows:,}" if budget_rows is not None else ""),
        file=sys.stderr,
    )
    print(f"config: {args.config_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
