"""Response headers and templates that keep injected markup inert (docs/security.md)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.test import Client

from compliance.charts import stacked_bars
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parent.parent


def directives(header: str) -> dict[str, str]:
    parts = (p.strip().split(None, 1) for p in header.split(";") if p.strip())
    return {p[0]: (p[1] if len(p) > 1 else "") for p in parts}


@pytest.mark.django_db
def test_every_page_carries_a_strict_content_security_policy():
    client = Client()
    for path in ("/accounts/login/", "/healthz", "/no-such-page/"):
        response = client.get(path)
        policy = directives(response["Content-Security-Policy"])
        assert "unsafe-inline" not in response["Content-Security-Policy"], path
        assert "unsafe-eval" not in response["Content-Security-Policy"], path
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'", path
        assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'", path
        assert policy["base-uri"] == "'self'" and policy["default-src"] == "'self'", path
        assert policy["connect-src"] == "'self' ws://testserver wss://testserver", path
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "same-origin"
        assert "camera=()" in response["Permissions-Policy"]


@pytest.mark.django_db
def test_signed_in_pages_carry_it_too():
    client = Client()
    client.force_login(UserFactory(username="alice"))
    response = client.get("/")
    assert "script-src 'self'" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_the_policy_can_be_rolled_out_report_only(settings):
    settings.CSP_REPORT_ONLY = True
    response = Client().get("/accounts/login/")
    assert "Content-Security-Policy" not in response
    assert "script-src 'self'" in response["Content-Security-Policy-Report-Only"]


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "event-handler attribute"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
    (re.compile(r"<style", re.I), "<style> block"),
]


def test_templates_have_no_inline_script_style_or_handler():
    # The policy would block them: a page that needs one is broken under it.
    found = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        text = path.read_text()
        for pattern, what in INLINE:
            for match in pattern.finditer(text):
                if what == "inline <script>" and 'type="application/json"' in match.group(0):
                    continue  # data, not code (json_script)
                found.append(f"{path.relative_to(ROOT)}: {what}: {match.group(0)!r}")
    assert found == []


def test_chart_legends_use_no_style_attribute():
    day = dt.date(2026, 1, 5)
    html = str(stacked_bars("Questions", [day], {"Sales": {day: 3}, "HR": {day: 1}}))
    assert "style=" not in html and 'class="swatch"' in html
