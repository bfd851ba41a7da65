"""SQL installed by the migrations: append-only triggers and the privileged retention path.

Kept in one module so that the migration, docs/compliance.md and the tests speak of the same
statements. See docs/compliance.md ("Append-only", "Retention") for the reasoning.
"""

LOG_TABLES = (
    "compliance_querylogentry",
    "compliance_querylogreview",
    "compliance_querylogaccess",
)

# UPDATE and DELETE are refused row by row, TRUNCATE per statement. Two exceptions:
# - DELETE inside compliance_querylog_purge(): the function sets a transaction-local flag, and
#   the trigger also requires the current user to be the table owner. Today the application
#   connects as the owner, so the flag alone opens the door (the owner could equally drop the
#   trigger: against the owner, the hash chain is the protection). Once the application runs as
#   a non-owner role (the hardening issue), only the SECURITY DEFINER function, which runs as
#   the owner, can delete.
# - TRUNCATE when the session says `counsel.allow_log_truncate = on`, which only the test
#   settings do: the test runner empties every table between tests with TRUNCATE.
REFUSE_FUNCTION = """
CREATE OR REPLACE FUNCTION compliance_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_setting('counsel.querylog_purge', true) = 'on'
       AND current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID)
    THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'TRUNCATE' AND current_setting('counsel.allow_log_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the compliance log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'old entries are removed only by compliance_querylog_purge() (retention)';
END
$$;
"""

TRIGGERS = "\n".join(
    f"""
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION compliance_refuse_change();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION compliance_refuse_change();
"""
    for table in LOG_TABLES
)

# Removes the entries before the first one created at or after `cutoff` (a prefix of the chain,
# so what remains is one unbroken run), with their review marks and access records. The caller
# (compliance.services.querylog_purge) holds the append lock and appends the checkpoint entry
# in the same transaction.
PURGE_FUNCTION = """
CREATE OR REPLACE FUNCTION compliance_querylog_purge(cutoff timestamptz)
RETURNS TABLE (removed bigint, keep_from bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    first_kept bigint;
    n bigint;
BEGIN
    IF cutoff > now() - interval '1 day' THEN
        RAISE EXCEPTION 'retention cutoff % is less than a day ago', cutoff;
    END IF;
    SELECT min(id) INTO first_kept FROM compliance_querylogentry WHERE created_at >= cutoff;
    IF first_kept IS NULL THEN
        SELECT coalesce(max(id), 0) + 1 INTO first_kept FROM compliance_querylogentry;
    END IF;
    PERFORM set_config('counsel.querylog_purge', 'on', true);
    DELETE FROM compliance_querylogaccess WHERE entry_id < first_kept;
    DELETE FROM compliance_querylogreview WHERE entry_id < first_kept;
    DELETE FROM compliance_querylogentry WHERE id < first_kept;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('counsel.querylog_purge', 'off', true);
    RETURN QUERY SELECT n, first_kept;
END
$$;
REVOKE ALL ON FUNCTION compliance_querylog_purge(timestamptz) FROM PUBLIC;
"""

DROP = "\n".join(
    [
        *(
            f"DROP TRIGGER IF EXISTS {t}_append_only ON {t};"
            f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t};"
            for t in LOG_TABLES
        ),
        "DROP FUNCTION IF EXISTS compliance_querylog_purge(timestamptz);",
        "DROP FUNCTION IF EXISTS compliance_refuse_change();",
    ]
)
