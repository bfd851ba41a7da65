"""Exports run on the real Celery worker (queue `default`), with progress an officer can poll."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.capabilities import COMPLIANCE_OFFICER
from compliance.models import QueryLogExport
from compliance.services import querylog_append
from tests.factories import RoleFactory, UserFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_export_runs_on_the_worker_and_its_file_matches_the_manifest(celery_worker):
    officer = UserFactory(username="cora", roles=[Group.objects.get(name=COMPLIANCE_OFFICER)])
    RoleFactory(name="Sales")
    now = timezone.now()
    for n in range(1200):  # more than one progress step (QUERYLOG_EXPORT_PROGRESS_EVERY)
        querylog_append(
            username="alice",
            roles=["Sales"],
            question=f"=cmd|' /C calc'!A{n}" if n % 100 == 0 else f"Question {n}",
            outcome="answered",
            started_at=now,
            finished_at=now,
        )
    client = Client()
    client.force_login(officer)
    response = client.post(reverse("compliance:export_create"), {"role": "Sales", "format": "csv"})
    export = QueryLogExport.objects.get()
    assert response.status_code == 302
    status_url = reverse("compliance:export_status", args=[export.token])
    deadline = time.monotonic() + 120
    while (status := client.get(status_url).json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, f"the export did not finish: {status}"
        time.sleep(0.2)
    assert status["state"] == "done" and status["percent"] == 100
    body = b"".join(client.get(status["download"]).streaming_content)
    manifest = json.loads(b"".join(client.get(status["manifest"]).streaming_content))
    assert manifest["count"] == 1200 == status["written"]
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest() == status["sha256"]
    assert body.count(b",'=cmd|") == 12 and b",=cmd" not in body
