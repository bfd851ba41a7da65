"""Query-log benchmark: appends, the review workspace's pages, verification, dashboards, export.

Loads N chained entries into the bench database (three months of questions from 40 users in
six roles, 5 % flagged or reviewed), then measures:

- `querylog_append` (advisory lock + hash + INSERT, one transaction each) against a bare INSERT
  of the same row (rolled back) in the same run;
- one page of the workspace (`querylog_page`: filter, keyset page of 50, capped count, review
  states) for typical filters;
- `querylog_verify` over the whole chain, the dashboard's aggregates over 28 days, and a CSV
  export of one role's entries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, latency_summary, log, machine_info, setup_django, table

ROLES = ["Sales", "HR", "Engineering", "Finance", "Employee", "Sales Operations"]
WORDS = [
    "discount",
    "dealer",
    "approval",
    "travel",
    "expense",
    "leave",
    "salary",
    "band",
    "firmware",
    "battery",
    "budget",
    "forecast",
    "invoice",
    "payment",
    "holiday",
    "laptop",
    "security",
    "incident",
    "runbook",
    "warranty",
    "target",
    "account",
    "bonus",
]


def load(rows: int, seed: int) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from compliance import chain
    from compliance.models import QueryLogEntry, QueryLogReview

    rng = random.Random(seed)
    with connection.cursor() as cursor:
        cursor.execute("SET counsel.allow_log_truncate = 'on'")
        cursor.execute(
            "TRUNCATE compliance_querylogaccess, compliance_querylogreview, "
            "compliance_querylogentry RESTART IDENTITY"
        )
        cursor.execute("SET counsel.allow_log_truncate = 'off'")
    users = [(f"user{n}", sorted(rng.sample(ROLES, rng.choice([1, 1, 1, 2])))) for n in range(40)]
    now = timezone.now()
    start = now - dt.timedelta(days=90)
    step = (now - start) / rows
    prev = chain.GENESIS
    batch: list[QueryLogEntry] = []
    t0 = time.perf_counter()
    for n in range(rows):
        name, roles = rng.choice(users)
        at = start + step * n
        outcome = rng.choices(["answered", "refused", "error"], [0.88, 0.1, 0.02])[0]
        fields = {
            "kind": "question",
            "username": name,
            "roles": roles,
            "question": " ".join(rng.sample(WORDS, 6)) + "?",
            "answer": " ".join(rng.sample(WORDS, 12)) if outcome == "answered" else "",
            "outcome": outcome,
            "route": rng.choice(["rag", "rag", "rag", "adapter"]),
            "model": "SmolLM2-135M-Instruct",
            "retrieved": [{"chunk": rng.randint(1, 10**5), "collection": rng.randint(1, 5)}],
            "prompt_tokens": rng.randint(50, 900),
            "completion_tokens": rng.randint(0, 120),
            "cost_estimate": Decimal("0.0003"),
            "latency_ms": rng.randint(100, 4000),
            "started_at": at,
            "finished_at": at,
            "created_at": at,
        }
        entry = QueryLogEntry(**fields)
        entry.prev_hash = prev
        entry.entry_hash = prev = chain.entry_hash(
            prev, {k: getattr(entry, k) for k in chain.HASHED_FIELDS}
        )
        batch.append(entry)
        if len(batch) == 5000 or n == rows - 1:
            with transaction.atomic():
                QueryLogEntry.objects.bulk_create(batch)
            batch = []
    ids = list(QueryLogEntry.objects.values_list("id", flat=True))
    marks = [
        QueryLogReview(
            entry_id=i, kind=rng.choice(["flagged", "reviewed"]), reviewer_username="cora"
        )
        for i in rng.sample(ids, len(ids) // 20)
    ]
    QueryLogReview.objects.bulk_create(marks, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE compliance_querylogentry; ANALYZE compliance_querylogreview")
    log(f"loaded {rows} entries in {time.perf_counter() - t0:.1f}s")


def timed(fn, n: int) -> dict:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return latency_summary(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="reuse the loaded entries")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    setup_django()
    from django.contrib.auth.models import Group
    from django.db import transaction
    from django.utils import timezone

    from accounts.capabilities import COMPLIANCE_OFFICER
    from accounts.models import User
    from compliance import services
    from compliance.models import QueryLogEntry
    from compliance.selectors import (
        LogFilters,
        querylog_dashboard,
        querylog_page,
        querylog_verify,
    )

    if not args.keep or QueryLogEntry.objects.count() < args.rows:
        load(args.rows, args.seed)
    rows = QueryLogEntry.objects.count()
    results: dict = {"rows": rows, "machine": machine_info()}
    today = timezone.localdate()
    week = today - dt.timedelta(days=today.weekday() + 7)

    def one_append():
        now = timezone.now()
        services.querylog_append(
            username="bench", question="How many days of leave?", outcome="answered",
            started_at=now, finished_at=now, roles=["Sales"], used_chunks=[],
        )  # fmt: skip

    class Rollback(Exception):
        pass

    def bare_insert():
        now = timezone.now()
        try:
            with transaction.atomic():
                QueryLogEntry.objects.create(
                    username="bench", question="How many days of leave?", outcome="answered",
                    started_at=now, finished_at=now, roles=["Sales"], prev_hash="x", entry_hash="y",
                )  # fmt: skip
                raise Rollback
        except Rollback:
            pass

    results["append"] = timed(one_append, args.repeat * 5)
    results["bare_insert"] = timed(bare_insert, args.repeat * 5)
    filters = {
        "no filter": LogFilters(),
        "role + last week": LogFilters(
            role="Sales", date_from=week, date_to=week + dt.timedelta(days=6)
        ),
        "one user": LogFilters(user="user7"),
        "text search": LogFilters(q="firmware warranty"),
        "role + text": LogFilters(role="HR", q="salary"),
        "collection used": LogFilters(collection=3),
        "review queue": LogFilters(state="queue"),
        "flagged": LogFilters(state="flagged"),
        "adapter, refused": LogFilters(route="adapter", outcome="refused"),
    }
    first_ids = querylog_page(LogFilters(), size=50).entries
    deep = first_ids[-1].pk - rows // 2 if first_ids else None
    results["pages"] = {}
    for name, f in filters.items():
        results["pages"][name] = timed(lambda f=f: querylog_page(f, size=50), args.repeat)
    results["pages"]["no filter, deep page"] = timed(
        lambda: querylog_page(LogFilters(), before=deep, size=50), args.repeat
    )
    t = time.perf_counter()
    verdict = querylog_verify()
    verify_s = time.perf_counter() - t
    results["verify"] = {"seconds": verify_s, "entries_per_s": verdict.checked / verify_s,
                         "intact": verdict.intact}  # fmt: skip
    results["dashboard_28_days"] = timed(
        lambda: querylog_dashboard(start=today - dt.timedelta(days=27), end=today), 5
    )
    officer = User.objects.filter(username="bench-officer").first()
    if officer is None:
        officer = User.objects.create(username="bench-officer")
        officer.groups.add(Group.objects.get(name=COMPLIANCE_OFFICER))
    export = services.querylog_export_request(
        officer=officer, filters={"role": "Sales"}, export_format="csv"
    )
    t = time.perf_counter()
    services.querylog_export_run(export_id=export.pk)
    export.refresh_from_db()
    export_s = time.perf_counter() - t
    results["export_csv_sales"] = {"rows": export.written, "seconds": export_s,
                                   "rows_per_s": export.written / export_s}  # fmt: skip

    print(f"\nquery log, {rows} entries")
    table_rows = [("append (lock + hash + insert)", *_ms(results["append"]))]
    table_rows.append(("bare INSERT (baseline)", *_ms(results["bare_insert"])))
    table_rows += [(f"page: {k}", *_ms(v)) for k, v in results["pages"].items()]
    table_rows.append(("dashboard, 28 days", *_ms(results["dashboard_28_days"])))
    print(table(["operation", "p50 ms", "p95 ms", "p99 ms"], table_rows))
    print(
        f"verify: {verdict.message()[:40]}… {verify_s:.1f}s "
        f"({results['verify']['entries_per_s']:.0f} entries/s)"
    )
    print(
        f"export CSV (role Sales): {export.written} rows in {export_s:.1f}s "
        f"({results['export_csv_sales']['rows_per_s']:.0f} rows/s)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"querylog-{rows}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


def _ms(summary: dict) -> tuple[float, float, float]:
    return summary["p50_ms"], summary["p95_ms"], summary["p99_ms"]


if __name__ == "__main__":
    main()
