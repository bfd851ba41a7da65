"""Row-level security on documents and chunks: the database's own access check.

The search chokepoint (`ingestion.selectors`) filters every read by the collections the user may
read, in SQL. Row-level security is the second, independent wall behind it: on the web
process's database role, a query that forgets that filter returns nothing instead of everything.
See docs/security.md for the roles, the policies and the threat model.

Each transaction that reads documents or chunks as the web role first says what it may see,
with a transaction-local setting (`set_config(…, true)`), set by one of three context managers:

- `reading_as(user=…)`: the collections the user may read, asked of the access module inside
  the same statement that sets them (`counsel.readable_collections`, a comma list of ids);
- `managing_collections(user=…)`: the collections whose documents the user may manage, asked
  of the access module the same way (`counsel.managed_collections`), for the document
  administration pages and API;
- `managing_documents()`: every row (`counsel.access_scope = 'all'`), for system paths that
  act for nobody in particular (tuning's training texts, staleness checks).

A row is visible when its collection is in either list, or in the "all" scope. Without any of
them, the policies admit no row. The table owner (migrations, Celery workers,
management commands) has a policy of its own that admits every row.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

RLS_TABLES = ("ingestion_document", "ingestion_chunk")
READABLE_SETTING = "counsel.readable_collections"
MANAGED_SETTING = "counsel.managed_collections"
SCOPE_SETTING = "counsel.access_scope"

# The policies read the settings through these three functions, each called once per statement
# (a scalar sub-select becomes an InitPlan), not once per row. A malformed list fails the
# statement: closed, not open.
FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION counsel_readable_collections() RETURNS bigint[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        string_to_array(nullif(current_setting('{READABLE_SETTING}', true), ''), ',')::bigint[],
        '{{}}'::bigint[])
$$;
CREATE OR REPLACE FUNCTION counsel_managed_collections() RETURNS bigint[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        string_to_array(nullif(current_setting('{MANAGED_SETTING}', true), ''), ',')::bigint[],
        '{{}}'::bigint[])
$$;
CREATE OR REPLACE FUNCTION counsel_manages_all() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(current_setting('{SCOPE_SETTING}', true) = 'all', false)
$$;
"""

# Fresh chunks in the whole table, for the search planner's "does this user read most of the
# table?" (a count, nothing else). SECURITY DEFINER: it runs as the owner, whose policy admits
# every row, so that the web role's restricted view does not change the plan. The freshness
# test is `ingestion.freshness.fresh`, written out in SQL (tests/test_rls.py compares them).
TOTAL_FUNCTION = """
CREATE OR REPLACE FUNCTION ingestion_fresh_chunk_total(at timestamptz) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT coalesce(sum(d.chunk_count), 0)::bigint FROM ingestion_document d
    WHERE d.indexed_version IS NOT NULL AND d.state <> 'expired'
      AND (d.valid_until IS NULL OR d.valid_until > at)
      AND (d.valid_from IS NULL OR d.valid_from <= at)
      AND NOT EXISTS (SELECT 1 FROM ingestion_document s
                      WHERE s.supersedes_id = d.id AND s.indexed_version IS NOT NULL)
$$;
"""

# The keyword part of the search (issue 16). Three things made the first version useless on real
# corpora, and shape this one:
#
# - every query word had to match (`websearch_to_tsquery`): 279 of 300 natural questions of a
#   test collection got no candidate at all. Here any term may match; a chunk scores the sum of
#   its terms' rarity (idf, from `ingestion_keywordstat`, counted over the reader's collections
#   only) times how strongly it holds each (`ts_rank` of the single term: frequency with a
#   saturation, headings weighing more) — BM25's shape, in PostgreSQL;
# - a SQL function's generic plan did not use the GIN index (47 ms to find nothing): this one is
#   PL/pgSQL and runs its statement with EXECUTE, planned for the actual terms each time;
# - `@@` is not LEAKPROOF, so under row-level security the index could not serve it: the function
#   runs as the owner and applies the transaction's scope itself (only the collections
#   `reading_as` set, whatever the caller passes; `collections` and `documents` only narrow;
#   `documents` NULL: no narrowing). Freshness comes from the chunks' own columns.
#
# Candidates come from the rarest terms first, up to KEYWORD_PROBE_CHUNKS matching chunks by their
# counts, so that a question's common words ("policy", "employee") do not make every chunk a
# candidate; every term still scores the candidates.
#
# Every candidate's tsvector is read once per term (`@@`, `ts_rank`), so it must be in the row:
# a chunk's row with its 1.5 kB vector is over PostgreSQL's 2 kB toast threshold, and with the
# default storage the tsvector went out of line, to be fetched from the toast table at every
# read (keyword part of a twelve-word question on 8.6k documents: p95 56 ms, 11 ms inline;
# migration 0013, KEYWORD_STORAGE).
KEYWORD_PROBE_CHUNKS = 1000
# A long question (a pasted paragraph) scores with its rarest terms only: every candidate is
# matched against every term, and a 200-word query took 0.4-0.8 s on 8.7k documents (issue 16);
# the common terms it drops weigh least. Candidates: the rarest terms' chunks, up to 1,000 by their
# counts (4,000 cost 20-40 ms more for a twelve-word question on 8.7k documents). Measured on
# ArguAna's paragraph queries (docs/benchmarks.md, "Retrieval quality"): 24 terms lost a third of
# the keyword ranking's nDCG@10 (0.294 against 0.419) and put fusion below dense search; 64 keep
# most of it (0.402) at p95 28 ms for a whole paragraph; 200 add 0.013 for 16 ms more.
KEYWORD_MAX_TERMS = 64
TEXT_SEARCH_FUNCTION = """
CREATE OR REPLACE FUNCTION ingestion_chunk_text_search(
    query text, collections bigint[], documents bigint[], max_rows integer)
RETURNS TABLE (id bigint, rank real)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
DECLARE
    allowed bigint[];
    terms text[];
    total bigint;
BEGIN
    SELECT array_agg(c) INTO allowed FROM unnest(collections) AS c
     WHERE c = ANY (counsel_readable_collections());
    SELECT array_agg(DISTINCT t.lexeme) INTO terms FROM unnest(to_tsvector('english', query)) AS t;
    IF allowed IS NULL OR terms IS NULL THEN
        RETURN;
    END IF;
    SELECT coalesce(sum(s.df), 0) INTO total FROM ingestion_keywordstat s
     WHERE s.term = '' AND s.collection_id = ANY (allowed);
    RETURN QUERY EXECUTE $q$
        WITH t AS MATERIALIZED (SELECT * FROM (
            SELECT q.term, coalesce(s.df, 0) AS df,
                   ln(1 + (greatest($3, 1) - coalesce(s.df, 0) + 0.5) / (coalesce(s.df, 0) + 0.5))
                       AS idf,
                   quote_literal(q.term)::tsquery AS tq
              FROM unnest($1::text[]) AS q(term)
              LEFT JOIN (SELECT k.term, sum(k.df) AS df FROM ingestion_keywordstat k
                          WHERE k.collection_id = ANY ($2) AND k.term = ANY ($1)
                          GROUP BY k.term) s ON s.term = q.term) a
             ORDER BY a.df, a.term LIMIT __MAX_TERMS__),
        probe AS MATERIALIZED (
            SELECT string_agg(p.term_q, ' | ')::tsquery AS q FROM (
                SELECT quote_literal(t.term) AS term_q,
                       sum(t.df) OVER (ORDER BY t.df, t.term) - t.df AS before
                  FROM t) p
             WHERE p.before < __PROBE_CHUNKS__),
        cand AS MATERIALIZED (
            SELECT c.id, c.search_vector FROM ingestion_chunk c
             WHERE c.search_vector @@ (SELECT q FROM probe)
               AND c.collection_id = ANY ($2)
               AND ($4::bigint[] IS NULL OR c.document_id = ANY ($4))
               AND NOT c.superseded
               AND (c.valid_from IS NULL OR c.valid_from <= now())
               AND (c.valid_until IS NULL OR c.valid_until > now()))
        SELECT cand.id, sum(t.idf * ts_rank(cand.search_vector, t.tq))::real AS rank
          FROM cand JOIN t ON cand.search_vector @@ t.tq
         GROUP BY cand.id
         ORDER BY rank DESC, cand.id
         LIMIT $5
    $q$ USING terms, allowed, total, documents, max_rows;
END
$fn$;
""".replace("__PROBE_CHUNKS__", str(KEYWORD_PROBE_CHUNKS)).replace(
    "__MAX_TERMS__", str(KEYWORD_MAX_TERMS)
)

# The chunk's tsvector stays in its row (`MAIN`: compressed if that pays, moved out only if the
# row could not fit a page otherwise); the text, read for the winners only, may go out of line.
# Only rows written afterwards take the new storage, so every row is written once more (the
# generated column is computed again from the same text).
KEYWORD_STORAGE = """
ALTER TABLE ingestion_chunk ALTER COLUMN search_vector SET STORAGE MAIN;
UPDATE ingestion_chunk SET text = text;
"""
KEYWORD_STORAGE_DROP = (
    "ALTER TABLE ingestion_chunk ALTER COLUMN search_vector SET STORAGE EXTENDED;"
)

# Each collection's number of stored chunks (`ingestion_collection.chunk_count`), kept by the
# chunk table itself: one statement-level trigger per operation adds and subtracts what the
# statement inserted, deleted or moved, whoever ran it (services, a cascade, a bulk COPY). The
# search plans from these counts instead of summing the documents of every readable collection
# per question, which cost 100 ms at 50,000 documents (issue 16). SECURITY DEFINER: a web-role
# delete must update the counts of the collections it touched whatever its scope.
CHUNK_COUNT_TRIGGER = """
CREATE OR REPLACE FUNCTION ingestion_chunk_count_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE ingestion_collection c SET chunk_count = c.chunk_count - o.n
          FROM (SELECT collection_id, count(*) AS n FROM old_rows GROUP BY collection_id) o
         WHERE c.id = o.collection_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE ingestion_collection c SET chunk_count = c.chunk_count + n.n
          FROM (SELECT collection_id, count(*) AS n FROM new_rows GROUP BY collection_id) n
         WHERE c.id = n.collection_id;
    END IF;
    RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS chunk_count_insert ON ingestion_chunk;
DROP TRIGGER IF EXISTS chunk_count_delete ON ingestion_chunk;
DROP TRIGGER IF EXISTS chunk_count_update ON ingestion_chunk;
CREATE TRIGGER chunk_count_insert AFTER INSERT ON ingestion_chunk
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ingestion_chunk_count_sync();
CREATE TRIGGER chunk_count_delete AFTER DELETE ON ingestion_chunk
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ingestion_chunk_count_sync();
CREATE TRIGGER chunk_count_update AFTER UPDATE ON ingestion_chunk
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ingestion_chunk_count_sync();
UPDATE ingestion_collection c
   SET chunk_count = (SELECT count(*) FROM ingestion_chunk k WHERE k.collection_id = c.id);
"""

CHUNK_COUNT_TRIGGER_DROP = """
DROP TRIGGER IF EXISTS chunk_count_insert ON ingestion_chunk;
DROP TRIGGER IF EXISTS chunk_count_delete ON ingestion_chunk;
DROP TRIGGER IF EXISTS chunk_count_update ON ingestion_chunk;
DROP FUNCTION IF EXISTS ingestion_chunk_count_sync();
"""

# The first version (migration 0006), for migrating back.
TEXT_SEARCH_FUNCTION_V1 = """
DROP FUNCTION IF EXISTS ingestion_chunk_text_search(text, bigint[], bigint[], integer);
CREATE FUNCTION ingestion_chunk_text_search(
    query text, collections bigint[], documents bigint[], max_rows integer)
RETURNS TABLE (id bigint, rank real)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT c.id, ts_rank(c.search_vector, q.query) AS rank
    FROM ingestion_chunk c, websearch_to_tsquery('english', query) AS q(query)
    WHERE c.search_vector @@ q.query
      AND c.collection_id = ANY ((SELECT counsel_readable_collections())::bigint[])
      AND c.collection_id = ANY (collections)
      AND c.document_id = ANY (documents)
    ORDER BY rank DESC, c.id
    LIMIT max_rows
$$;
"""

# A row is in scope when its collection is readable or managed in this transaction, or in the
# "all" scope. The same condition checks writes: a row cannot be moved out of the scope.
_IN_SCOPE = """(collection_id = ANY ((SELECT counsel_readable_collections())::bigint[])
           OR collection_id = ANY ((SELECT counsel_managed_collections())::bigint[])
           OR (SELECT counsel_manages_all()))"""

# FORCE: the owner is subject to the policies too; its access is the explicit `owner_all`
# policy below (`TO CURRENT_USER`: the role that runs the migration, i.e. the owner), not a
# silent exemption by ownership. Every other role gets `access_scope`. Each policy is dropped
# (if there) and created again, so that this text can run again on a database that has it:
# migration 0005 runs the current text on a fresh database, and later migrations re-run it.
OWNER_POLICIES = "\n".join(
    f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS owner_all ON {table};
CREATE POLICY owner_all ON {table} TO CURRENT_USER USING (true) WITH CHECK (true);
"""
    for table in RLS_TABLES
)
SCOPE_POLICIES = "\n".join(
    f"""
DROP POLICY IF EXISTS access_scope ON {table};
CREATE POLICY access_scope ON {table} TO PUBLIC USING {_IN_SCOPE} WITH CHECK {_IN_SCOPE};
"""
    for table in RLS_TABLES
)
POLICIES = OWNER_POLICIES + SCOPE_POLICIES

INSTALL = FUNCTIONS + TOTAL_FUNCTION + POLICIES

DROP = "\n".join(
    [
        *(
            f"DROP POLICY IF EXISTS access_scope ON {t}; DROP POLICY IF EXISTS owner_all ON {t};"
            f" ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY;"
            f" ALTER TABLE {t} DISABLE ROW LEVEL SECURITY;"
            for t in RLS_TABLES
        ),
        "DROP FUNCTION IF EXISTS ingestion_fresh_chunk_total(timestamptz);",
        "DROP FUNCTION IF EXISTS ingestion_chunk_text_search(text, bigint[], bigint[], integer);",
        "DROP FUNCTION IF EXISTS counsel_manages_all();",
        "DROP FUNCTION IF EXISTS counsel_managed_collections();",
        "DROP FUNCTION IF EXISTS counsel_readable_collections();",
    ]
)


# The access module's subqueries behind each list setting: (function name, its id column, how
# often the user's id appears in it).
_ACCESS_QUERIES = {
    READABLE_SETTING: ("readable_collection_ids_query", "collection_id", 1),
    MANAGED_SETTING: ("managed_collection_ids_query", "id", 3),
}


@functools.cache
def _access_sql(setting: str) -> tuple[str, tuple]:
    # The access module's own subquery, compiled once with a marker user id and bound per call
    # (as ingestion.selectors does for the search statements).
    from accounts import selectors as access
    from ingestion.selectors import _MARK_USER, _MarkerUser

    function, _column, markers = _ACCESS_QUERIES[setting]
    sql, params = getattr(access, function)(user=_MarkerUser()).query.sql_with_params()
    if sum(1 for p in params if type(p) is int and p == _MARK_USER) != markers:
        raise RuntimeError(f"{function}: marker not found {markers} times in {params!r}")
    return sql, params


def _active_user_id(user) -> int | None:
    if user is None or not getattr(user, "is_authenticated", False) or not user.pk:
        return None
    return user.pk


def _set(cursor, name: str, value: str) -> None:
    cursor.execute("SELECT set_config(%s, %s, true)", [name, value])


@contextmanager
def _scoped(name: str, set_value) -> Iterator[None]:
    # Transaction-local settings live until the *outer* transaction ends. When this runs
    # nested in a larger transaction (a savepoint), the previous value is put back on the way
    # out, so the scope never outlives the block that asked for it. On an error the savepoint
    # is rolled back, and PostgreSQL restores the setting with it. When this block *is* the
    # outer transaction (the chat's search), its end clears the setting: no read and restore,
    # two round trips fewer on the way to the first token.
    nested = connection.in_atomic_block or not connection.get_autocommit()
    with transaction.atomic():
        with connection.cursor() as cursor:
            if nested:
                cursor.execute("SELECT current_setting(%s, true)", [name])
                previous = cursor.fetchone()[0] or ""
            set_value(cursor)
        yield
        if nested:
            with connection.cursor() as cursor:
                _set(cursor, name, previous)


def _user_scope(setting: str, user):
    """A `set_value` for `_scoped`: one statement asks the access module for the user's
    collections and sets them, so the list is never older than the statement."""
    user_id = _active_user_id(user)

    def set_value(cursor) -> None:
        if user_id is None:
            _set(cursor, setting, "")
            return
        from ingestion.selectors import _MARK_USER

        sql, params = _access_sql(setting)
        column = _ACCESS_QUERIES[setting][1]
        cursor.execute(
            f"SELECT set_config(%s, coalesce((SELECT string_agg(DISTINCT r.{column}::text,"  # noqa: S608
            f" ',') FROM ({sql}) r), ''), true)",
            [setting, *(user_id if type(p) is int and p == _MARK_USER else p for p in params)],
        )

    return set_value


@contextmanager
def reading_as(*, user) -> Iterator[None]:
    """A transaction in which documents and chunks of the collections `user` may read are
    visible to the web role (and nothing else). Reads the readable set from the database in
    the statement that sets it: a revoked role is seen at once."""
    with _scoped(READABLE_SETTING, _user_scope(READABLE_SETTING, user)):
        yield


@contextmanager
def managing_collections(*, user) -> Iterator[None]:
    """A transaction in which documents and chunks of the collections `user` manages are
    visible to the web role: the document administration pages and API, for that user. Like
    `reading_as`, the set is re-read in the statement that sets it. Seeing a row is not reading
    it: the pages show content only where the user may also read the collection."""
    with _scoped(MANAGED_SETTING, _user_scope(MANAGED_SETTING, user)):
        yield


def managing_collections_view(view):
    """`managing_collections(user=request.user)` around a whole view, template included."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        with managing_collections(user=request.user):
            return view(request, *args, **kwargs)

    return wrapped


@contextmanager
def managing_documents() -> Iterator[None]:
    """A transaction in which every document and chunk is visible to the web role. Only for
    system paths that act for no user in particular and filter by collection themselves
    (tuning's training texts, staleness checks); a user's document administration uses
    `managing_collections`."""
    with _scoped(SCOPE_SETTING, lambda cursor: _set(cursor, SCOPE_SETTING, "all")):
        yield


# --- the web role's privileges ----------------------------------------------------------------

# The log tables are append-only for the web role: no UPDATE, DELETE or TRUNCATE at all (the
# triggers refuse them for everyone; the missing privilege refuses them before the trigger).
_APPEND_ONLY = (
    "compliance_querylogentry",
    "compliance_querylogreview",
    "compliance_querylogaccess",
)


def app_role_grant(*, using: str = "default", **kwargs) -> str | None:
    """Give the web process's role (settings.DATABASE_APP_ROLE) what it needs on every table,
    after every `migrate` (so tables of later migrations are covered too). Idempotent.

    Does nothing when the setting is empty, when the role does not exist in this cluster, or
    when `migrate` itself runs as that role. Returns the role it granted to.
    """
    from django.conf import settings
    from django.db import connections

    role = settings.DATABASE_APP_ROLE
    conn = connections[using]
    if not role or conn.vendor != "postgresql":
        return None
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", [role]
        )
        current, exists = cursor.fetchone()
        if not exists or current == role:
            return None
        name = conn.ops.quote_name(role)
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {name}")
        cursor.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}"
        )
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {name}")
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relname = ANY(%s)",
            [list(_APPEND_ONLY)],
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {name}")
        # Migrations are the owner's business: the web role may read what was applied.
        cursor.execute(f"REVOKE INSERT, UPDATE, DELETE ON django_migrations FROM {name}")
    return role


def app_role_grant_after_migrate(sender, using: str = "default", **kwargs) -> None:
    app_role_grant(using=using)
