"""The query log's integrity, the officers' workspace and separation of duties, on the real
database (triggers, hash chain, GIN search, SQL aggregates) through the real views.

Cast: cora is a compliance officer, ada an administrator, alice reads Sales, charlie has no role.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.capabilities import ADMINISTRATOR, COMPLIANCE_OFFICER
from accounts.models import AuditEvent, User
from accounts.selectors import user_may_see
from compliance import services
from compliance.models import QueryLogAccess, QueryLogEntry, QueryLogExport, QueryLogReview
from compliance.selectors import LogFilters, querylog_dashboard, querylog_page, querylog_verify
from ingestion.models import Document
from tests.factories import CollectionFactory, RoleFactory, UserFactory


@pytest.fixture
def cast(db):
    company = CollectionFactory(name="Company", slug="company")
    sales = CollectionFactory(name="Sales", slug="sales")
    sales_role = RoleFactory(name="Sales", reads=[company, sales])
    officer_role = Group.objects.get(name=COMPLIANCE_OFFICER)
    officer_role.readable_collections.set([company])
    return {
        "company": company,
        "sales": sales,
        "sales_role": sales_role,
        "officer": UserFactory(username="cora", roles=[officer_role]),
        "admin": UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)]),
        "alice": UserFactory(username="alice", roles=[sales_role]),
        "charlie": UserFactory(username="charlie"),
    }


def entry(user: User | None = None, at: dt.datetime | None = None, **fields) -> QueryLogEntry:
    """One entry through the real append path (the chat's own)."""
    at = at or timezone.now()
    values = {
        "user": user,
        "username": user.username if user else "someone",
        "roles": sorted(user.groups.values_list("name", flat=True)) if user else [],
        "question": "What is the dealer discount limit?",
        "answer": "23.5% without approval [1]",
        "outcome": "answered",
        "model": "SmolLM2-135M-Instruct",
        "retrieved": [],
        "used_chunks": [],
        "prompt_tokens": 500,
        "completion_tokens": 40,
        "cost_estimate": Decimal("0.00031"),
        "first_token_ms": 700,
        "latency_ms": 1500,
        "started_at": at - dt.timedelta(seconds=2),
        "finished_at": at,
        "created_at": at,
    }
    return services.querylog_append(**(values | fields))


def as_user(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def raw(sql: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


# --- append-only, in the database ---------------------------------------------------------------


def test_update_delete_and_truncate_on_log_rows_raise_at_the_database(cast):
    e = entry(cast["alice"])
    services.querylog_review_add(officer=cast["officer"], entry=e, kind="flagged", note="why")
    services.querylog_entry_open(officer=cast["officer"], entry_id=e.pk)
    for table in ("compliance_querylogentry", "compliance_querylogreview"):
        column = "answer" if table.endswith("entry") else "note"
        for sql in (f"UPDATE {table} SET {column} = 'edited'", f"DELETE FROM {table}"):  # noqa: S608
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                raw(sql)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw("UPDATE compliance_querylogaccess SET officer_username = 'nobody'")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw("DELETE FROM compliance_querylogaccess")
    # TRUNCATE too, in any session that is not the test runner's (which must empty tables).
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw("SET CONSTRAINTS ALL IMMEDIATE")  # the inserts' deferred foreign-key checks
        raw("SET LOCAL counsel.allow_log_truncate = 'off'")
        raw("TRUNCATE compliance_querylogaccess")
    # Through the ORM as well; and the purge flag alone does not open the door to UPDATE.
    with pytest.raises(DatabaseError), transaction.atomic():
        QueryLogEntry.objects.filter(pk=e.pk).update(answer="edited")
    with pytest.raises(DatabaseError), transaction.atomic():
        raw("SET LOCAL counsel.querylog_purge = 'on'")
        QueryLogEntry.objects.filter(pk=e.pk).update(answer="edited")
    e.refresh_from_db()
    assert e.answer == "23.5% without approval [1]"
    assert QueryLogReview.objects.count() == 1 and QueryLogAccess.objects.count() == 1


def test_deleting_a_user_leaves_their_entries_as_written(cast):
    e = entry(cast["alice"])
    cast["alice"].delete()
    e.refresh_from_db()
    assert e.user_id is not None and e.username == "alice"
    assert querylog_verify().intact


# --- the hash chain -----------------------------------------------------------------------------


def test_each_entry_links_to_the_previous_one_and_survives_the_round_trip(cast):
    first = entry(
        cast["alice"],
        question="Ünïcode — “quotes” and\nnewlines",
        retrieved=[{"chunk": 1, "score": 0.0163934, "similarity": 1e-7, "used": True}],
        cost_estimate=0.5,
    )
    second = entry(cast["alice"], cost_estimate=0, first_token_ms=None)
    assert first.prev_hash == "0" * 64
    assert second.prev_hash == first.entry_hash
    result = querylog_verify()
    assert result.intact and result.checked == 2 and result.tip_hash == second.entry_hash
    out = io.StringIO()
    call_command("verify_querylog", stdout=out)
    assert out.getvalue().startswith("intact: 2 entries")


def test_a_row_altered_through_a_privileged_connection_is_found_at_that_entry(cast):
    entries = [entry(cast["alice"], question=f"Question {n}") for n in range(5)]
    target = entries[2]
    # What an attacker with the owner's rights can do: switch the trigger off, edit, switch on.
    with transaction.atomic():
        raw("SET CONSTRAINTS ALL IMMEDIATE")
        raw("ALTER TABLE compliance_querylogentry DISABLE TRIGGER USER")
        raw(
            "UPDATE compliance_querylogentry SET answer = 'nothing to see' WHERE id = %s",
            [target.pk],
        )
        raw("ALTER TABLE compliance_querylogentry ENABLE TRIGGER USER")
    result = querylog_verify()
    assert not result.intact
    assert result.first_bad_id == target.pk and result.checked == 2
    assert "altered" in result.reason
    with pytest.raises(CommandError, match=f"broken at entry {target.pk}"):
        call_command("verify_querylog")


def test_a_row_removed_or_forged_through_a_privileged_connection_breaks_the_next_link(cast):
    entries = [entry(cast["alice"], question=f"Question {n}") for n in range(4)]
    with transaction.atomic():
        raw("SET CONSTRAINTS ALL IMMEDIATE")
        raw("ALTER TABLE compliance_querylogentry DISABLE TRIGGER USER")
        raw("DELETE FROM compliance_querylogentry WHERE id = %s", [entries[1].pk])
        raw("ALTER TABLE compliance_querylogentry ENABLE TRIGGER USER")
    result = querylog_verify()
    assert result.first_bad_id == entries[2].pk and "removed or inserted" in result.reason


def test_the_integrity_page_reports_intact_or_the_broken_entry(cast):
    from compliance.models import QueryLogVerification

    entries = [entry(cast["alice"]) for _ in range(3)]
    client = as_user(cast["officer"])

    def verify_now() -> str:
        # "Verify now" queues the walk for the worker; here the test runs the task's service.
        with transaction.atomic():
            assert client.post(reverse("compliance:integrity_verify")).status_code == 302
        pending = QueryLogVerification.objects.get(state="queued")
        assert (
            "Verifying the whole chain"
            in client.get(reverse("compliance:integrity")).content.decode()
        )
        services.querylog_verification_run(verification_id=pending.pk)
        return client.get(reverse("compliance:integrity")).content.decode()

    page = verify_now()
    assert "Intact." in page and entries[-1].entry_hash in page and "asked by cora" in page
    with transaction.atomic():
        raw("SET CONSTRAINTS ALL IMMEDIATE")
        raw("ALTER TABLE compliance_querylogentry DISABLE TRIGGER USER")
        raw("UPDATE compliance_querylogentry SET username = 'x' WHERE id = %s", [entries[1].pk])
        raw("ALTER TABLE compliance_querylogentry ENABLE TRIGGER USER")
    page = verify_now()
    assert f'Broken at entry <a href="/compliance/entries/{entries[1].pk}/">' in page
    assert QueryLogVerification.objects.filter(state="done").count() == 2


# --- retention ----------------------------------------------------------------------------------


def test_retention_removes_old_entries_and_keeps_the_remaining_chain_verifiable(cast, settings):
    settings.QUERYLOG_RETENTION_DAYS = 30
    now = timezone.now()
    old = [entry(cast["alice"], at=now - dt.timedelta(days=40 - n)) for n in range(3)]
    services.querylog_review_add(officer=cast["officer"], entry=old[0], kind="note", note="seen")
    services.querylog_entry_open(officer=cast["officer"], entry_id=old[1].pk)
    recent = [entry(cast["alice"], at=now - dt.timedelta(days=5 - n)) for n in range(2)]
    services.querylog_review_add(officer=cast["officer"], entry=recent[0], kind="reviewed")

    from compliance.tasks import apply_retention

    assert apply_retention() == 3  # the beat task, run in-process
    assert not QueryLogEntry.objects.filter(pk__in=[e.pk for e in old]).exists()
    assert list(QueryLogReview.objects.values_list("entry_id", flat=True)) == [recent[0].pk]
    assert not QueryLogAccess.objects.exists()
    checkpoint = QueryLogEntry.objects.get(kind="checkpoint")
    assert checkpoint.checkpoint["removed"] == 3
    assert checkpoint.checkpoint["first_id"] == old[0].pk
    assert checkpoint.checkpoint["last_id"] == old[-1].pk
    assert checkpoint.checkpoint["anchor"] == old[-1].entry_hash == recent[0].prev_hash
    assert checkpoint.prev_hash == recent[-1].entry_hash
    result = querylog_verify()
    assert result.intact and result.checked == 3 and result.checkpoints == 1
    assert AuditEvent.objects.filter(action="querylog.retention").count() == 1
    # Appending after the checkpoint continues the same chain; a second run finds nothing.
    entry(cast["alice"])
    assert apply_retention() == 0
    assert querylog_verify().intact
    # Removing the oldest retained entry outside the purge path is caught.
    with transaction.atomic():
        # A superuser's way around every trigger, foreign keys included.
        raw("SET LOCAL session_replication_role = replica")
        raw("DELETE FROM compliance_querylogreview")
        raw("DELETE FROM compliance_querylogentry WHERE id = %s", [recent[0].pk])
    result = querylog_verify()
    assert not result.intact and result.first_bad_id == recent[1].pk


def test_retention_that_removes_everything_still_verifies(cast):
    old = [entry(cast["alice"], at=timezone.now() - dt.timedelta(days=100)) for _ in range(2)]
    result = services.querylog_purge(older_than=timezone.now() - dt.timedelta(days=30))
    assert result.removed == 2
    assert result.checkpoint.prev_hash == old[-1].entry_hash
    assert querylog_verify().intact


def test_the_purge_function_refuses_a_cutoff_that_is_not_in_the_past(cast):
    entry(cast["alice"], at=timezone.now() - dt.timedelta(hours=2))
    with pytest.raises(DatabaseError, match="less than a day ago"), transaction.atomic():
        services.querylog_purge(older_than=timezone.now() - dt.timedelta(hours=1))
    assert QueryLogEntry.objects.count() == 1


def test_retention_zero_keeps_everything(cast, settings):
    settings.QUERYLOG_RETENTION_DAYS = 0
    entry(cast["alice"], at=timezone.now() - dt.timedelta(days=3000))
    assert services.querylog_purge().removed == 0
    assert QueryLogEntry.objects.count() == 1


# --- separation of duties -----------------------------------------------------------------------


def compliance_urls(e: QueryLogEntry, export: QueryLogExport) -> list[tuple[str, str]]:
    token = export.token
    return [
        ("get", reverse("compliance:log_list")),
        ("get", reverse("compliance:log_list") + "?role=Sales&q=discount"),
        ("get", reverse("compliance:queue")),
        ("get", reverse("compliance:entry_detail", args=[e.pk])),
        ("post", reverse("compliance:entry_review", args=[e.pk])),
        ("get", reverse("compliance:export_list")),
        ("post", reverse("compliance:export_create")),
        ("get", reverse("compliance:export_detail", args=[token])),
        ("get", reverse("compliance:export_status", args=[token])),
        ("get", reverse("compliance:export_download", args=[token])),
        ("get", reverse("compliance:export_manifest", args=[token])),
        ("get", reverse("compliance:integrity")),
        ("post", reverse("compliance:integrity_verify")),
        ("get", reverse("compliance:dashboard")),
    ]


@pytest.fixture
def finished_export(cast):
    entry(cast["alice"])
    export = services.querylog_export_request(
        officer=cast["officer"], filters={}, export_format="csv"
    )
    assert services.querylog_export_run(export_id=export.pk) == "done"
    export.refresh_from_db()
    return export


@pytest.mark.parametrize("who", ["admin", "alice", "charlie"])
def test_administrators_and_employees_get_403_on_every_compliance_url(cast, who, finished_export):
    e = QueryLogEntry.objects.get()
    client = as_user(cast[who])
    for method, url in compliance_urls(e, finished_export):
        response = getattr(client, method)(url, {"kind": "flagged", "note": "x", "format": "csv"})
        assert response.status_code == 403, (method, url, response.status_code)
    assert not QueryLogReview.objects.exists() and not QueryLogAccess.objects.exists()
    assert QueryLogExport.objects.count() == 1
    # Services refuse them as well, whatever calls them.
    with pytest.raises(PermissionError):
        services.querylog_entry_open(officer=cast[who], entry_id=e.pk)
    assert not user_may_see(user=cast[who], obj=e)
    assert not user_may_see(user=cast[who], obj=finished_export)


def test_anonymous_visitors_are_sent_to_sign_in(cast, finished_export):
    e = QueryLogEntry.objects.get()
    for method, url in compliance_urls(e, finished_export):
        response = getattr(Client(), method)(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_officers_use_every_compliance_url(cast, finished_export):
    e = QueryLogEntry.objects.get()
    client = as_user(cast["officer"])
    for method, url in compliance_urls(e, finished_export):
        response = getattr(client, method)(url, {"kind": "note", "note": "ok", "format": "csv"})
        assert response.status_code in (200, 302), (method, url, response.status_code)
    # An unknown export token looks like nothing at all.
    assert client.get(reverse("compliance:export_download", args=["nope"])).status_code == 404


def test_officers_read_no_documents_beyond_their_roles(cast):
    sales_doc = Document.objects.create(
        collection=cast["sales"], title="Pricing", original_name="p.md", state="indexed"
    )
    assert not user_may_see(user=cast["officer"], obj=sales_doc)
    assert as_user(cast["officer"]).get(f"/documents/{sales_doc.pk}/").status_code == 404


# --- the workspace ------------------------------------------------------------------------------


def test_filters_combine_and_search_questions_and_answers(cast):
    now = timezone.now()
    hana = UserFactory(username="hana", roles=[RoleFactory(name="HR", reads=[cast["company"]])])
    a = entry(cast["alice"], at=now - dt.timedelta(days=8), question="Dealer discount ceiling?")
    b = entry(
        cast["alice"],
        at=now - dt.timedelta(days=1),
        question="Who approves travel?",
        answer="Your manager approves business travel.",
        route="tuned",
        adapter="ap-123-v1",
        retrieved=[{"chunk": 9, "collection": cast["sales"].pk, "used": True}],
    )
    c = entry(hana, at=now - dt.timedelta(days=1), question="Parental leave?", outcome="refused")
    services.querylog_review_add(officer=cast["officer"], entry=b, kind="flagged", note="check")
    services.querylog_review_add(officer=cast["officer"], entry=c, kind="flagged", note="check")
    services.querylog_review_add(officer=cast["officer"], entry=c, kind="reviewed", note="fine")

    def ids(**filters) -> list[int]:
        return [e.pk for e in querylog_page(LogFilters(**filters)).entries]

    assert ids() == [c.pk, b.pk, a.pk]
    assert ids(role="Sales") == [b.pk, a.pk]
    assert ids(role="HR") == [c.pk]
    assert ids(user="alice", date_from=(now - dt.timedelta(days=3)).date()) == [b.pk]
    assert ids(date_to=(now - dt.timedelta(days=5)).date()) == [a.pk]
    assert ids(q="discount") == [a.pk]
    assert ids(q="manager travel") == [b.pk]  # words from the answer
    assert ids(route="tuned") == ids(model="ap-123-v1") == [b.pk]
    assert ids(collection=cast["sales"].pk) == [b.pk]
    assert ids(outcome="refused") == [c.pk]
    assert ids(state="flagged") == [b.pk]
    assert ids(state="reviewed") == [c.pk]
    assert ids(state="unreviewed") == [a.pk]
    assert ids(state="queue") == [b.pk, a.pk]
    # The same filters through the page, with a bad date reported rather than ignored.
    client = as_user(cast["officer"])
    page = client.get(reverse("compliance:log_list"), {"role": "Sales", "q": "discount"})
    assert "Dealer discount ceiling?" in page.content.decode()
    assert "Who approves travel?" not in page.content.decode()
    bad = client.get(reverse("compliance:log_list"), {"date_from": "2026-13-45"}).content.decode()
    assert "Enter a valid date." in bad and "correct the filters" in bad


def test_pages_are_keyset_pages_without_gaps_or_repeats(cast):
    made = [entry(cast["alice"], question=f"Q{n}").pk for n in range(23)]
    seen, before = [], None
    while True:
        page = querylog_page(LogFilters(), before=before, size=10)
        seen += [e.pk for e in page.entries]
        assert page.count == 23
        if page.older is None:
            break
        before = page.older
    assert seen == made[::-1]
    back = querylog_page(LogFilters(), after=seen[9], size=10)
    assert [e.pk for e in back.entries] == seen[:9]


def test_opening_an_entry_shows_the_recorded_chunks_and_is_logged(cast):
    e = entry(
        cast["alice"],
        used_chunks=[
            {
                "chunk": 41,
                "document": 7,
                "document_title": "Pricing and Discount Policy",
                "collection": cast["sales"].pk,
                "version": 3,
                "heading": "Approval",
                "page": 2,
                "text": "No dealer discount above 23.5% without the VP Sales.",
            }
        ],
        route_reason="Retrieval: the adapter is stale.",
    )
    client = as_user(cast["officer"])
    page = client.get(reverse("compliance:entry_detail", args=[e.pk])).content.decode()
    for text in (
        "No dealer discount above 23.5% without the VP Sales.",
        "Pricing and Discount Policy",
        "version 3",
        "Retrieval: the adapter is stale.",
        "What is the dealer discount limit?",
    ):
        assert text in page
    access = QueryLogAccess.objects.get()
    assert (access.entry_id, access.officer_username) == (e.pk, "cora")
    assert client.get(reverse("compliance:entry_detail", args=[999999])).status_code == 404


def test_flagging_needs_a_reason_and_a_refused_note_is_kept_on_the_page(cast):
    e = entry(cast["alice"])
    client = as_user(cast["officer"])
    url = reverse("compliance:entry_review", args=[e.pk])
    refused = client.post(url, {"kind": "flagged", "note": "   "})
    assert refused.status_code == 400 and "Say why you flag this entry." in refused.content.decode()
    long_note = "x" * (settings.QUERYLOG_NOTE_MAX_CHARS + 1)
    refused = client.post(url, {"kind": "note", "note": long_note})
    assert refused.status_code == 400 and long_note in refused.content.decode()
    assert not QueryLogReview.objects.exists()
    assert client.post(url, {"kind": "flagged", "note": "Shares a salary band"}).status_code == 302
    queue = client.get(reverse("compliance:log_list"), {"state": "queue"}).content.decode()
    assert "Flagged" in queue
    client.post(url, {"kind": "reviewed", "note": "Band is public"})
    assert [r.kind for r in QueryLogReview.objects.order_by("id")] == ["flagged", "reviewed"]
    assert querylog_page(LogFilters(state="queue")).entries == []


# --- export -------------------------------------------------------------------------------------


def test_csv_cells_starting_with_formula_characters_are_neutralised(cast):
    hostile = ['=HYPERLINK("http://x")', "+1+1", "-2-2", "@SUM(A1)", "\tTab", "\rCR", "fine"]
    for text in hostile:
        entry(cast["alice"], question=text)
    export = services.querylog_export_request(
        officer=cast["officer"], filters={}, export_format="csv"
    )
    assert services.querylog_export_run(export_id=export.pk) == "done"
    export.refresh_from_db()
    path = Path(settings.MEDIA_ROOT) / export.file_path
    data = path.read_bytes()
    rows = list(csv.DictReader(io.StringIO(data.decode(), newline="")))
    questions = [r["question"] for r in rows]
    assert questions == ["'" + t for t in hostile[:-1]] + ["fine"]
    assert all(not r["question"].startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows)
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["count"] == len(hostile) == export.written
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() == export.sha256
    # The file lives under two random names, neither of them the URL's token.
    assert export.token not in export.file_path
    assert len(Path(export.file_path).parent.name) == 32


def test_jsonl_export_follows_the_filters_and_is_logged(cast):
    entry(cast["alice"], question="Sales question")
    entry(cast["charlie"], question="Other question")
    client = as_user(cast["officer"])
    response = client.post(
        reverse("compliance:export_create"), {"user": "alice", "format": "jsonl"}
    )
    export = QueryLogExport.objects.get()
    assert response["Location"] == reverse("compliance:export_detail", args=[export.token])
    assert export.filters == {"user": "alice"}
    services.querylog_export_run(export_id=export.pk)
    download = client.get(reverse("compliance:export_download", args=[export.token]))
    body = b"".join(download.streaming_content)
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [line["question"] for line in lines] == ["Sales question"]
    manifest = json.loads(
        b"".join(
            client.get(reverse("compliance:export_manifest", args=[export.token])).streaming_content
        )
    )
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest()
    assert manifest["filters"] == {"user": "alice"} and manifest["count"] == 1
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"querylog.export", "querylog.export_done", "querylog.export_download"} <= actions
    # A re-delivered task does not write the export twice.
    assert services.querylog_export_run(export_id=export.pk) == "skipped"


# --- dashboards ---------------------------------------------------------------------------------


def test_dashboard_aggregates_and_draws_accessible_charts(cast):
    today = timezone.localdate()
    noon = timezone.make_aware(dt.datetime.combine(today, dt.time(12)))
    entry(cast["alice"], at=noon, latency_ms=1000, prompt_tokens=100, completion_tokens=10)
    entry(cast["alice"], at=noon, latency_ms=3000, route="tuned", prompt_tokens=50)
    entry(cast["charlie"], at=noon, outcome="refused", latency_ms=100)
    entry(cast["alice"], at=noon - dt.timedelta(days=1), outcome="error", latency_ms=50)
    data = querylog_dashboard(start=today - dt.timedelta(days=6), end=today)
    assert data.per_role_day["Sales"] == {today: 2, today - dt.timedelta(days=1): 1}
    assert data.per_role_day["(no role)"] == {today: 1}
    assert data.per_route_day["tuned"] == {today: 1}
    assert data.outcomes_day["refused"][today] == 1
    assert data.outcomes_day["error"][today - dt.timedelta(days=1)] == 1
    assert data.latency_day["answer"][today] == 2000.0  # the median of 1000 and 3000
    assert data.totals["questions"] == 4
    usage = {(u["role"], u["route"]): u for u in data.usage}
    assert usage[("Sales", "rag")]["prompt_tokens"] == 100 + 500
    page = as_user(cast["officer"]).get(reverse("compliance:dashboard")).content.decode()
    assert page.count('<svg class="chart"') == 8
    assert 'role="img"' in page and "<title" in page and "Questions per day, by role" in page


# --- demo history -------------------------------------------------------------------------------


def test_the_demo_company_gets_a_chained_idempotent_history(db):
    call_command("load_demo", stdout=io.StringIO())
    count = QueryLogEntry.objects.count()
    call_command("load_demo", stdout=io.StringIO())
    assert QueryLogEntry.objects.count() == count > 100
    assert querylog_verify().intact
    entries = QueryLogEntry.objects.all()
    span = (
        entries.order_by("-created_at")[0].created_at - entries.order_by("created_at")[0].created_at
    )
    assert span > dt.timedelta(days=14)
    assert set(entries.values_list("outcome", flat=True)) >= {"answered", "refused", "error"}
    assert set(entries.values_list("route", flat=True)) == {"rag", "tuned"}
    # Refusals come from people who may not read the collection; answers carry their passage.
    answered = entries.filter(outcome="answered", route="rag").first()
    assert answered.used_chunks[0]["text"] and answered.used_chunks[0]["document_title"]
    assert set(entries.filter(outcome="refused").values_list("username", flat=True)) <= {
        "erin", "eli", "sam", "fiona", "max", "nora"
    }  # fmt: skip
