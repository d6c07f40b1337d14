"""Raw API keys never leave auditor: LiteLLM before hashed tokens (early 2024) stored the key itself,
`sk-…`, in LiteLLM_VerificationToken.token, and everything keyed on the token (spend-log api_key, counter
keys, finding entity ids) carries it. Each one is shown as its SHA-256, the token LiteLLM stores for that
key today, so it still identifies the key and nothing printed can be used as one. Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import fields, replace

from auditor.audit.findings import ScanResult

RAW_KEY_PREFIX = "sk-"  # how LiteLLM issues keys; a stored hash is 64 hex digits and never starts so


def is_raw_key(token: object) -> bool:
    return isinstance(token, str) and token.startswith(RAW_KEY_PREFIX) and len(token) > len(RAW_KEY_PREFIX)


def key_hash(raw: str) -> str:
    """What LiteLLM's hash_token makes of a key: the token it stores."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class Redactor:
    """Replaces every known raw key in a text by its hash (longest first, so no key hides part of another)."""

    def __init__(self, raw_keys: Iterable[str]) -> None:
        found = {k for k in raw_keys if is_raw_key(k)}
        self.swaps = [(k, key_hash(k)) for k in sorted(found, key=len, reverse=True)]

    def __bool__(self) -> bool:
        return bool(self.swaps)

    def __call__(self, value):
        if not isinstance(value, str) or not self.swaps:
            return value
        for raw, hashed in self.swaps:
            if raw in value:
                value = value.replace(raw, hashed)
        return value


def redact_result(result: ScanResult, tokens: Iterable[str]) -> ScanResult:
    """The result with every raw key (from the keys table, or an entity id that is one) replaced by its hash,
    and a note saying how many keys were stored raw."""
    candidates = set(tokens)
    candidates.update(f.entity_id for f in result.findings if f.scope == "key" and f.entity_id)
    candidates.update(s.entity_id for s in result.spend if s.scope == "key")
    redactor = Redactor(candidates)
    if not redactor:
        return result
    keys_fields = [f.name for f in fields(result.findings[0])] if result.findings else []
    findings = [
        replace(f, **{name: redactor(getattr(f, name)) for name in keys_fields if isinstance(getattr(f, name), str)})
        for f in result.findings
    ]
    spend = [replace(s, entity_id=redactor(s.entity_id)) for s in result.spend]
    notes = [redactor(n) for n in result.notes]
    n = len(redactor.swaps)
    notes.append(
        f"{n} key{'s' if n != 1 else ''} stored as raw API keys (sk-…) rather than hashes: shown by SHA-256, "
        "the token LiteLLM stores for a key today; rotate them, since anyone who can read the table can use them"
    )
    return replace(result, findings=findings, spend=spend, notes=notes)
