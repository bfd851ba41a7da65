"""The query log's hash chain, as pure functions.

Each entry stores `prev_hash` (the `entry_hash` of the entry before it, GENESIS for the first)
and `entry_hash = SHA-256(prev_hash ‖ canonical JSON of the entry's content)`. The canonical JSON
covers every field in CHAIN_FIELDS (everything but the id, the hashes and the generated search
column), with sorted keys, no whitespace, UTF-8, datetimes as UTC ISO-8601 with microseconds and
the cost as a fixed-point string, so the hash computed before the INSERT equals the one
recomputed from the row read back. Changing any field, reordering, inserting or removing a row
breaks the chain at exactly that row.

A field added to QueryLogEntry later goes into OPTIONAL_FIELDS: it is hashed only when it is
set (not None, "" or empty), so the rows written before it existed keep their hashes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal

GENESIS = "0" * 64

CHAIN_FIELDS = (
    "kind",
    "user_id",
    "username",
    "roles",
    "readable_collections",
    "profile_key",
    "conversation_id",
    "question_message_id",
    "answer_message_id",
    "question",
    "standalone_question",
    "answer",
    "outcome",
    "error",
    "route",
    "route_reason",
    "model",
    "adapter",
    "retrieved",
    "used_chunks",
    "prompt_tokens",
    "completion_tokens",
    "cost_estimate",
    "first_token_ms",
    "latency_ms",
    "started_at",
    "finished_at",
    "created_at",
    "checkpoint",
)

# Fields added after rows were chained: hashed only when set (see the module docstring).
OPTIONAL_FIELDS: tuple[str, ...] = ("unsupported_figures", "grounding")
# Everything a row's hash may cover: read these to recompute it.
HASHED_FIELDS = CHAIN_FIELDS + OPTIONAL_FIELDS

_COST = Decimal("0.00000001")
_JSON_FIELDS = (
    "roles",
    "readable_collections",
    "retrieved",
    "used_chunks",
    "checkpoint",
    "grounding",
)


def _normal(value):
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("query-log datetimes must be timezone-aware")
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return value


def canonical(fields: Mapping, *, from_db: bool = False) -> bytes:
    """The canonical JSON of an entry's content (the CHAIN_FIELDS of `fields`).

    `from_db`: the JSON fields were just decoded from jsonb, so their round trip is skipped
    (the verifier's hot loop).
    """
    content = {name: _normal(fields.get(name)) for name in CHAIN_FIELDS}
    for name in OPTIONAL_FIELDS:
        if fields.get(name) not in (None, "", [], {}):
            content[name] = _normal(fields[name])
    # decimal(14, 8) in the database: 0, 0.5 and Decimal("0E-8") must hash alike.
    content["cost_estimate"] = str(Decimal(str(content["cost_estimate"] or 0)).quantize(_COST))
    # JSON fields go through a JSON round trip first, as they do through jsonb: tuples become
    # lists, and what is stored is what gets hashed.
    if not from_db:
        for name in _JSON_FIELDS:
            if name in content:  # an optional one may be absent
                content[name] = json.loads(json.dumps(content[name]))
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(prev_hash: str, fields: Mapping, *, from_db: bool = False) -> str:
    content = canonical(fields, from_db=from_db)
    return hashlib.sha256(prev_hash.encode() + b"\n" + content).hexdigest()
