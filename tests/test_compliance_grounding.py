"""The claim check in the compliance pages, on the real database through the real views: the
grounding filter (and its round trip through exports), the entry page's Grounding section, the
list's badge, the dashboard's groundedness, the chain over entries with and without grounding,
and the demo history's grounding values.

Cast: cora is a compliance officer, alice reads Sales.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.capabilities import COMPLIANCE_OFFICER
from accounts.models import User
from compliance import chain, charts, services
from compliance.forms import LogFilterForm
from compliance.models import QueryLogEntry, QueryLogExport
from compliance.selectors import (
    GROUNDING_CHOICES,
    LogFilters,
    querylog_dashboard,
    querylog_export_rows,
    querylog_filter,
    querylog_page,
    querylog_verify,
)
from tests.factories import CollectionFactory, RoleFactory, UserFactory

QUOTE = {"chunk": 41, "document": 7, "text": "A hotel night in Munich may cost up to EUR 150."}


@pytest.fixture
def cast(db):
    company = CollectionFactory(name="Company", slug="company")
    officer_role = Group.objects.get(name=COMPLIANCE_OFFICER)
    officer_role.readable_collections.set([company])
    return {
        "officer": UserFactory(username="cora", roles=[officer_role]),
        "alice": UserFactory(username="alice", roles=[RoleFactory(name="Sales", reads=[company])]),
    }


def entry(user: User, at: dt.datetime | None = None, **fields) -> QueryLogEntry:
    """One entry through the real append path; without grounding fields it is old-style."""
    at = at or timezone.now()
    values = {
        "user": user,
        "username": user.username,
        "roles": sorted(user.groups.values_list("name", flat=True)),
        "question": "How much may a hotel night in Munich cost?",
        "answer": "Up to EUR 150 per night.",
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


def checked(unsupported: list[str], *, figures: int = 3, looped: bool = False, quote=None) -> dict:
    """An entry's claim-check fields as the chat writes them."""
    grounding = {"checked": figures, "unsupported": unsupported, "looped": looped}
    if quote:
        grounding["quote"] = quote
    return {"unsupported_figures": len(unsupported), "grounding": grounding}


def as_user(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def raw(sql: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


@pytest.fixture
def mix(cast):
    """One entry of each kind the claim check leaves behind, oldest first."""
    alice = cast["alice"]
    return {
        "old": entry(alice, question="Asked before the claim check existed"),
        "unsupported": entry(
            alice,
            question="Unsupported answer",
            answer="Up to EUR 14 per night, 5 nights, breakfast included.",
            **checked(["EUR 14", "5"], quote=QUOTE),
        ),
        "supported": entry(alice, question="Supported answer", **checked([], quote=QUOTE)),
        "refused": entry(
            alice, question="Refused question", answer="", outcome="refused", route="rag"
        ),
        "tuned": entry(alice, question="Adapter answer", route="tuned", adapter="ap-1-v1"),
        "looped_ok": entry(alice, question="Looped, supported", **checked([], looped=True)),
        "looped_bad": entry(
            alice, question="Looped, unsupported", **checked(["31 March"], looped=True)
        ),
    }


def ids(**filters) -> list[int]:
    return [e.pk for e in querylog_page(LogFilters(**filters)).entries]


# --- the filter ---------------------------------------------------------------------------------


def test_the_grounding_filter_finds_exactly_the_right_entries(mix):
    pk = {name: e.pk for name, e in mix.items()}
    assert ids(grounding="unsupported") == [pk["looped_bad"], pk["unsupported"]]
    assert ids(grounding="supported") == [pk["looped_ok"], pk["supported"]]
    assert ids(grounding="unchecked") == [pk["tuned"], pk["refused"], pk["old"]]
    assert ids(grounding="looped") == [pk["looped_bad"], pk["looped_ok"]]
    assert ids(grounding="") == sorted(pk.values(), reverse=True)
    # It combines with the other filters, and the count agrees with the page.
    assert ids(grounding="unsupported", q="breakfast") == [pk["unsupported"]]
    assert querylog_page(LogFilters(grounding="unchecked")).count == 3


def test_the_unsupported_filter_is_the_partial_index_predicate(mix):
    # The condition of querylog_unsupported_created, as written, so the planner may use it.
    sql = str(querylog_filter(LogFilters(grounding="unsupported")).query)
    assert '"compliance_querylogentry"."unsupported_figures" > 0' in sql
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")  # no walk of the primary key
        compiled, params = (
            querylog_filter(LogFilters(grounding="unsupported")).order_by().query.sql_with_params()
        )
        cursor.execute(f"EXPLAIN {compiled}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "querylog_unsupported_created" in plan


def test_the_form_offers_every_choice_and_refuses_others(cast):
    form = LogFilterForm({"grounding": "unsupported"})
    assert form.is_valid() and form.filters() == LogFilters(grounding="unsupported")
    assert {v for v, _ in form.fields["grounding"].choices} == {"", *GROUNDING_CHOICES}
    bad = LogFilterForm({"grounding": "bogus"})
    assert not bad.is_valid() and "grounding" in bad.errors
    page = as_user(cast["officer"]).get(reverse("compliance:log_list"), {"grounding": "bogus"})
    assert "correct the filters" in page.content.decode()


def test_the_filter_survives_to_json_and_from_json(mix):
    filters = LogFilters(grounding="looped", role="Sales", date_from=timezone.localdate())
    stored = json.loads(json.dumps(filters.to_json()))  # as QueryLogExport.filters keeps it
    assert stored["grounding"] == "looped"
    assert LogFilters.from_json(stored) == filters
    assert LogFilters().to_json() == {}  # "any" is not written
    assert list(querylog_filter(LogFilters.from_json(stored))) == list(querylog_filter(filters))


def test_an_export_of_a_grounding_selection_holds_exactly_that_selection(mix, cast):
    client = as_user(cast["officer"])
    response = client.post(
        reverse("compliance:export_create"), {"grounding": "unsupported", "format": "jsonl"}
    )
    assert response.status_code == 302
    export = QueryLogExport.objects.get()
    assert export.filters == {"grounding": "unsupported"}
    assert services.querylog_export_run(export_id=export.pk) == "done"
    export.refresh_from_db()
    lines = (Path(settings.MEDIA_ROOT) / export.file_path).read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [
        mix["unsupported"].pk,
        mix["looped_bad"].pk,
    ]


def test_export_rows_carry_the_count_and_the_unsupported_figures(mix):
    rows = {r["id"]: r for r in querylog_export_rows(LogFilters())}
    assert rows[mix["unsupported"].pk]["unsupported_figures"] == 2
    assert rows[mix["unsupported"].pk]["unsupported"] == ["EUR 14", "5"]
    assert rows[mix["supported"].pk]["unsupported_figures"] == 0
    assert rows[mix["supported"].pk]["unsupported"] == []
    assert rows[mix["refused"].pk]["unsupported_figures"] is None
    assert rows[mix["old"].pk]["unsupported"] == []
    assert all("grounding" not in r for r in rows.values())  # the quote is not exported
    assert all(r["review_state"] == "unreviewed" for r in rows.values())


# --- the list and the entry page ----------------------------------------------------------------


def test_the_log_list_shows_a_badge_on_entries_with_unsupported_figures(mix, cast):
    page = as_user(cast["officer"]).get(reverse("compliance:log_list")).content.decode()
    badges = re.findall(r'<span class="badge off unsupported"[^>]*>([^<]*)</span>', page)
    assert sorted(badges) == ["1 unsupported", "2 unsupported"]
    filtered = as_user(cast["officer"]).get(
        reverse("compliance:log_list"), {"grounding": "supported"}
    )
    text = filtered.content.decode()
    assert "Supported answer" in text and "Unsupported answer" not in text
    # The selection's filters travel with the export form.
    assert '<input type="hidden" name="grounding" value="supported">' in text


def test_the_entry_page_shows_the_quote_and_the_unsupported_figures(cast):
    e = entry(
        cast["alice"],
        answer="Up to EUR 14 per night, 5 nights.",
        used_chunks=[
            {
                "chunk": 41,
                "document": 7,
                "document_title": "Travel Policy",
                "collection": 1,
                "version": 2,
                "heading": "Hotels",
                "page": 3,
                "text": QUOTE["text"],
            }
        ],
        **checked(["EUR 14", "<b>5</b>"], figures=4, quote=QUOTE),
    )
    page = as_user(cast["officer"]).get(reverse("compliance:entry_detail", args=[e.pk]))
    html = page.content.decode()
    assert 'id="grounding-heading">Grounding</h2>' in html
    assert '<blockquote class="quote">' + QUOTE["text"] + "</blockquote>" in html
    assert "Travel Policy · document 7 · chunk 41" in html
    assert '<dd id="grounding-checked">4</dd>' in html
    assert "<li><mark>EUR 14</mark></li>" in html
    assert "<li><mark>&lt;b&gt;5&lt;/b&gt;</mark></li>" in html  # escaped like any text
    assert re.search(r'id="grounding-looped">no<', html)
    assert "No claim check ran" not in html


def test_the_entry_page_says_when_no_claim_check_ran(cast):
    client = as_user(cast["officer"])
    refused = entry(cast["alice"], answer="", outcome="refused")
    html = client.get(reverse("compliance:entry_detail", args=[refused.pk])).content.decode()
    assert "No claim check ran: the question was refused." in html
    assert "Figures checked" not in html and 'class="quote"' not in html
    tuned = entry(cast["alice"], route="tuned", adapter="ap-1-v1")
    html = client.get(reverse("compliance:entry_detail", args=[tuned.pk])).content.decode()
    assert "No claim check ran: the adapter answered without sources" in html
    looped = entry(cast["alice"], **checked([], figures=0, looped=True))
    html = client.get(reverse("compliance:entry_detail", args=[looped.pk])).content.decode()
    assert "none: every figure was found in the sources" in html
    assert "the answer was stopped because it repeated itself" in html


# --- the dashboard ------------------------------------------------------------------------------


def test_the_dashboard_computes_groundedness_per_day_and_in_total(cast):
    alice = cast["alice"]
    today = timezone.localdate()
    yesterday = today - dt.timedelta(days=1)
    noon = timezone.make_aware(dt.datetime.combine(today, dt.time(12)))
    entry(alice, at=noon, **checked([]))
    entry(alice, at=noon, **checked([], looped=True))
    entry(alice, at=noon, **checked(["EUR 14", "5"]))
    # Not checked, or not an answer: outside the share.
    entry(alice, at=noon, outcome="refused", answer="")
    entry(alice, at=noon, route="tuned", adapter="ap-1-v1")
    entry(alice, at=noon, outcome="cancelled", **checked(["9"]))
    entry(alice, at=noon - dt.timedelta(days=1), **checked(["31 March"]))
    entry(alice, at=noon - dt.timedelta(days=30), **checked(["1"]))  # out of the period
    data = querylog_dashboard(start=today - dt.timedelta(days=6), end=today)
    assert data.grounded_day == {today: (3, 2), yesterday: (1, 0)}
    assert data.totals["checked"] == 4 and data.totals["unsupported"] == 2
    assert data.totals["grounded_percent"] == 50.0
    assert querylog_dashboard(start=today, end=today).totals["grounded_percent"] == 66.7

    page = as_user(cast["officer"]).get(reverse("compliance:dashboard")).content.decode()
    assert page.count('<svg class="chart"') == 8
    assert re.search(r'id="grounding-totals"><strong>2 of 4</strong>', page)
    assert f"{today:%Y-%m-%d} every figure supported: 66.7 % (2 of 3)" in page
    assert f"{yesterday:%Y-%m-%d} every figure supported: 0.0 % (0 of 1)" in page
    assert "every figure supported 50.0 % (2 of 4)" in page  # the chart's description
    assert f"<td>{today:%Y-%m-%d}</td><td>3</td><td>2</td><td>66.7 %</td>" in page


def test_the_dashboard_without_checked_answers(cast):
    entry(cast["alice"], outcome="refused", answer="")
    data = querylog_dashboard(start=timezone.localdate(), end=timezone.localdate())
    assert data.grounded_day == {} and data.totals["grounded_percent"] is None
    page = as_user(cast["officer"]).get(reverse("compliance:dashboard")).content.decode()
    assert "<strong>0 of 0</strong>" in page and "No answer was checked in this period." in page


def test_value_axis_labels_get_room_for_the_longest_one():
    days = [dt.date(2026, 1, d) for d in range(1, 8)]
    svg = str(charts.lines("Latency", days, {"answer": {days[0]: 9_000, days[1]: 2_500}}, "ms"))
    tick = r'<text x="([\d.]+)" y="[\d.]+" text-anchor="end" class="tick">([^<]+)<'
    ticks = re.findall(tick, svg)
    assert [label for _, label in ticks] == ["0", "2,500", "5,000", "7,500", "10,000"]
    for x, label in ticks:
        # Right-aligned at x: the label's left end stays inside the picture.
        assert float(x) - len(label) * charts.CHAR_W >= 0, label
    grid_start = float(re.search(r'<line x1="([\d.]+)"', svg).group(1))
    assert grid_start > float(ticks[-1][0])
    # Small values keep the usual margin.
    small = str(charts.lines("Few", days, {"n": {days[0]: 3}}))
    assert f'<line x1="{charts.LEFT}"' in small


# --- the chain ----------------------------------------------------------------------------------


def test_the_chain_verifies_with_and_without_grounding_and_covers_it(cast):
    old = entry(cast["alice"], question="Old-style")
    grounded = entry(cast["alice"], **checked(["EUR 14"], quote=QUOTE))
    unchecked = entry(cast["alice"], outcome="refused", answer="", unsupported_figures=None)
    zero = entry(cast["alice"], **checked([], figures=0))
    after = entry(cast["alice"], question="Old-style again")
    result = querylog_verify()
    assert result.intact and result.checked == 5 and result.tip_hash == after.entry_hash

    def without_optional(e: QueryLogEntry) -> str:
        return chain.entry_hash(e.prev_hash, {n: getattr(e, n) for n in chain.CHAIN_FIELDS})

    # Rows without grounding hash as they did before the fields existed ...
    for e in (old, unchecked, after):
        e.refresh_from_db()
        assert without_optional(e) == e.entry_hash
    # ... and the hash of a checked row covers its claim check (0 unsupported included).
    for e in (grounded, zero):
        e.refresh_from_db()
        assert without_optional(e) != e.entry_hash

    # Hiding an unsupported figure through a privileged connection is found at that entry.
    with transaction.atomic():
        raw("SET CONSTRAINTS ALL IMMEDIATE")
        raw("ALTER TABLE compliance_querylogentry DISABLE TRIGGER USER")
        raw(
            "UPDATE compliance_querylogentry SET unsupported_figures = NULL, grounding = '{}' "
            "WHERE id = %s",
            [grounded.pk],
        )
        raw("ALTER TABLE compliance_querylogentry ENABLE TRIGGER USER")
    result = querylog_verify()
    assert not result.intact and result.first_bad_id == grounded.pk and "altered" in result.reason


# --- the demo history ---------------------------------------------------------------------------


def test_the_demo_history_has_plausible_grounding(db):
    from compliance.demo import demo_history_load

    call_command("load_demo", "--no-documents", stdout=io.StringIO())  # users and roles
    assert demo_history_load() > 100
    entries = QueryLogEntry.objects.all()
    rag_answers = entries.filter(outcome="answered", route="rag")
    assert not rag_answers.filter(unsupported_figures__isnull=True).exists()
    assert not entries.exclude(outcome="answered").exclude(unsupported_figures=None).exists()
    assert not entries.filter(route="tuned").exclude(unsupported_figures=None).exists()
    flagged = rag_answers.filter(unsupported_figures__gt=0)
    assert 0 < flagged.count() < rag_answers.count() / 4  # mostly supported
    assert set(flagged.values_list("unsupported_figures", flat=True)) <= {1, 2}
    for e in flagged:
        assert len(e.grounding["unsupported"]) == e.unsupported_figures
        assert all(figure in e.answer for figure in e.grounding["unsupported"])
    quoted = rag_answers.filter(grounding__has_key="quote").first()
    assert quoted.grounding["quote"]["text"] in quoted.used_chunks[0]["text"]
    assert querylog_verify().intact
    # The filter and the dashboard have something to show.
    assert querylog_page(LogFilters(grounding="unsupported")).count == flagged.count()
    today = timezone.localdate()
    totals = querylog_dashboard(start=today - dt.timedelta(days=27), end=today).totals
    assert totals["checked"] == rag_answers.count()
    assert totals["unsupported"] == flagged.count()


def test_the_entry_page_says_how_sure_the_model_was_that_its_sources_answer(cast):
    client = as_user(cast["officer"])
    refused = entry(cast["alice"], answer="", outcome="refused", grounding={"answerable": 0.4123})
    html = client.get(reverse("compliance:entry_detail", args=[refused.pk])).content.decode()
    assert re.search(r'id="grounding-answerable">.*<strong>41 %</strong> sure they do: too', html)
    answered = entry(cast["alice"], grounding={"answerable": 0.9})
    html = client.get(reverse("compliance:entry_detail", args=[answered.pk])).content.decode()
    assert "<strong>90 %</strong> sure they do." in html
    old = entry(cast["alice"])  # before the check kept its confidence: nothing is said
    html = client.get(reverse("compliance:entry_detail", args=[old.pk])).content.decode()
    assert 'id="grounding-answerable"' not in html
