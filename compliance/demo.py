"""A realistic query-log history for the demo company (called by `manage.py load_demo`).

Three weeks of questions from the demo manifest, asked by the demo employees whose roles may read
the answer (and a few who may not, which are refused), on both routes, with token counts,
latencies, some errors and some thumbs up or down. Answers from retrieval get the chat's claim
check (assistant.grounding, run on the demo answer and its passage): most have every figure in
the passage, a few carry a sentence with a figure the passage does not hold, one now and then
was stopped because it repeated itself. Every entry goes through `querylog_append`, oldest
first, so the chain is as real as the chat's. Idempotent: it writes nothing when the log already
has entries.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.selectors import access_profile_for_user, user_readable_collection_ids
from compliance.models import QueryLogEntry
from compliance.services import querylog_append

# Who asks about what: collection slug -> demo users whose roles read it.
ASKERS = {
    "company": ["sam", "hana", "eli", "fiona", "max", "omar", "erin"],
    "sales": ["sam", "omar", "max"],
    "hr": ["hana"],
    "engineering": ["eli", "max"],
    "finance": ["fiona"],
}
# ... and who sometimes asks about it without being able to read it (refused).
OUTSIDERS = {"sales": ["erin", "eli"], "hr": ["sam", "erin"], "engineering": ["fiona"],
             "finance": ["max", "nora"], "company": ["nora"]}  # fmt: skip
PROMPT_PRICE = Decimal("0.0000005")  # per prompt token, for the demo's cost estimates
COMPLETION_PRICE = Decimal("0.0000015")
DAYS = 21
PER_DAY = (6, 14)  # questions per working day
# What a small model adds that its passage does not say: the claim check finds these figures.
UNSUPPORTED_SENTENCES = (
    "Approval takes 5 working days.",
    "This applies from 1 April 2024.",
    "The rule is reviewed every 18 months.",
    "Questions go to extension 4417.",
    "It was agreed with the works council in 2019.",
)
UNSUPPORTED_RATE = (0.10, 0.04)  # share of checked answers with one, and with two such sentences
LOOPED_RATE = 0.02  # share of checked answers stopped because they repeated themselves
LOOP_NOTE = "\n\n(The answer was stopped here: it had begun repeating itself.)"


def _passage(path: Path, needle: str) -> tuple[str, str, int | None]:
    """The passage of a demo document that holds `needle` (heading, text, page)."""
    from ingestion.extraction import Rejected, extract

    try:
        extracted = extract(path, filename=path.name)
    except (Rejected, OSError):
        return "", "", None
    for section in extracted.sections:
        at = section.text.find(needle)
        if at >= 0:
            start = max(0, section.text.rfind("\n", 0, max(0, at - 300)) + 1)
            return section.heading, section.text[start : start + 700].strip(), section.page
    first = extracted.sections[0] if extracted.sections else None
    return (first.heading, first.text[:700], first.page) if first else ("", "", None)


def _documents(manifest: dict) -> dict[str, dict]:
    from ingestion.models import Collection, Document

    out = {}
    for slug, collection in manifest["collections"].items():
        col = Collection.objects.filter(slug=slug).first()
        for doc in collection["documents"]:
            row = (
                Document.objects.filter(collection=col, title=doc.get("title", ""))
                .order_by("id")
                .first()
            )
            out[doc["file"]] = {
                "title": doc.get("title", ""),
                "document": row.pk if row else None,
                "collection": col.pk if col else None,
            }
    return out


def _claim_check(
    *, question: str, answer: str, document: dict, heading: str, text: str, looped: bool
) -> tuple[dict, list[tuple[int, int]]]:
    """The chat's claim check of a demo answer against its passage: the entry's `grounding`
    (with the supporting quote) and the offsets of the unsupported figures in `answer`."""
    from assistant import grounding

    figures = grounding.figures_in(answer)
    unsupported = grounding.figures_unsupported(
        answer=answer,
        sources=[f"{document.get('title', '')}\n{heading}\n{text}"],
        question=question,
    )
    payload = {
        "checked": len(figures),
        "unsupported": [f.text for f in unsupported],
        "looped": looped,
    }
    quote = grounding.quote_select(question=question, passages=[text])
    if quote is not None:
        payload["quote"] = {"chunk": None, "document": document.get("document"), "text": quote.text}
    return payload, [(f.start, f.end) for f in unsupported]


def _conversation(
    user,
    question: str,
    answer: str,
    outcome: str,
    at,
    rng,
    grounding: dict | None = None,
    unsupported: Sequence[tuple[int, int]] = (),
) -> tuple[int, int, int]:
    """The asker's own conversation for a demo entry (their chat history), maybe rated."""
    from assistant.models import Conversation, Feedback, Message
    from assistant.rendering import answer_html
    from assistant.services import REFUSAL

    status = {
        QueryLogEntry.Outcome.ANSWERED: Message.Status.COMPLETE,
        QueryLogEntry.Outcome.REFUSED: Message.Status.REFUSED,
    }.get(outcome, Message.Status.ERROR)
    text = answer or (REFUSAL if outcome == QueryLogEntry.Outcome.REFUSED else "")
    conversation = Conversation.objects.create(user=user, title=question[:80])
    asked = Message.objects.create(conversation=conversation, role="user", content=question)
    answered = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=text,
        content_html=answer_html(text, unsupported=unsupported) if text else "",
        status=status,
        # The claim check as the chat stores it on the message (the quote is not: no chunk).
        grounding={k: v for k, v in (grounding or {}).items() if k != "quote"},
    )
    Conversation.objects.filter(pk=conversation.pk).update(created_at=at, updated_at=at)
    Message.objects.filter(conversation=conversation).update(created_at=at)
    if outcome == QueryLogEntry.Outcome.ANSWERED and rng.random() < 0.4:
        Feedback.objects.create(message=answered, user=user, rating=1 if rng.random() < 0.8 else -1)
    return conversation.pk, asked.pk, answered.pk


@transaction.atomic
def demo_history_load(*, seed: int = 7) -> int:
    """Write the demo history; returns the number of entries written (0 if the log had any)."""
    if QueryLogEntry.objects.exists():
        return 0
    demo_dir = settings.BASE_DIR / "demo"
    manifest = json.loads((demo_dir / "manifest.json").read_text())
    questions = manifest["questions"]
    documents = _documents(manifest)
    passages: dict[tuple[str, str], tuple[str, str, int | None]] = {}
    names = {n for group in (*ASKERS.values(), *OUTSIDERS.values()) for n in group}
    users = {u.username: u for u in User.objects.filter(username__in=names)}
    context = {
        name: (
            sorted(u.groups.values_list("name", flat=True)),
            sorted(user_readable_collection_ids(user=u)),
            access_profile_for_user(user=u).key,
        )
        for name, u in users.items()
    }
    rng = random.Random(seed)  # noqa: S311 - demo data, reproducible on purpose
    # The claim checks draw from their own sequence, so the entries themselves stay as they were.
    checks = random.Random(f"{seed}-grounding")  # noqa: S311 - demo data, reproducible on purpose
    now = timezone.now()
    start = (now - dt.timedelta(days=DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    moments = []
    for day in range(DAYS):
        date = start + dt.timedelta(days=day)
        weekend = date.weekday() >= 5
        for _ in range(rng.randint(0, 2) if weekend else rng.randint(*PER_DAY)):
            at = date + dt.timedelta(hours=rng.uniform(7.5, 18.5))
            if at < now - dt.timedelta(minutes=30):
                moments.append(at)
    moments.sort()
    written = 0
    for at in moments:
        q = rng.choice(questions)
        slug = q["collection"]
        refused = rng.random() < 0.12
        username = rng.choice(OUTSIDERS[slug] if refused else ASKERS[slug])
        user = users.get(username)
        if user is None:
            continue
        roles, readable, profile = context[username]
        error = not refused and rng.random() < 0.04
        adapter_route = not refused and not error and slug != "company" and rng.random() < 0.3
        doc = documents.get(q["document"], {})
        key = (q["document"], q["answer_contains"])
        if key not in passages:
            passages[key] = _passage(demo_dir / q["document"], q["answer_contains"])
        heading, text, page = passages[key]
        used = []
        if not refused and not adapter_route and text:
            used = [
                {
                    "chunk": None,
                    "document": doc.get("document"),
                    "document_title": doc.get("title", ""),
                    "collection": doc.get("collection"),
                    "version": 1,
                    "heading": heading,
                    "page": page,
                    "text": text,
                }
            ]
        retrieved = [
            {
                "chunk": None,
                "document": u["document"],
                "version": 1,
                "collection": u["collection"],
                "score": round(rng.uniform(0.02, 0.033), 6),
                "similarity": round(rng.uniform(0.45, 0.8), 4),
                "used": True,
            }
            for u in used
        ]
        if refused:
            outcome, answer, reason = QueryLogEntry.Outcome.REFUSED, "", "No readable chunk."
        elif error:
            outcome, answer = QueryLogEntry.Outcome.ERROR, ""
        else:
            outcome = QueryLogEntry.Outcome.ANSWERED
            answer = f"According to {doc.get('title', 'the policy')}: {q['answer_contains']}."
        grounding, unsupported = {}, []
        if outcome == QueryLogEntry.Outcome.ANSWERED and used:
            roll = checks.random()
            wrong = 2 if roll < UNSUPPORTED_RATE[1] else 1 if roll < sum(UNSUPPORTED_RATE) else 0
            looped = checks.random() < LOOPED_RATE
            if looped:  # the same sentence again and again, until the chat stopped it
                answer = " ".join([answer] * 3)
            answer = " ".join([answer, *checks.sample(UNSUPPORTED_SENTENCES, wrong), "[1]"])
            if looped:
                answer += LOOP_NOTE
            grounding, unsupported = _claim_check(
                question=q["question"],
                answer=answer,
                document=doc,
                heading=heading,
                text=text,
                looped=looped,
            )
        if adapter_route:
            route, adapter = "tuned", f"{profile}-v1"
            reason = "Adapter current for the asker's profile; short factual question."
            prompt_tokens, latency = rng.randint(60, 140), rng.randint(500, 1600)
        else:
            route, adapter = "rag", ""
            reason = reason if refused else "Retrieval: default route for cited answers."
            prompt_tokens = 0 if refused else rng.randint(380, 950)
            latency = rng.randint(80, 250) if refused else rng.randint(1100, 4200)
        completion = rng.randint(25, 120) if outcome == "answered" else 0
        cost = (PROMPT_PRICE * prompt_tokens + COMPLETION_PRICE * completion).quantize(
            Decimal("0.00000001")
        )
        conversation, question_id, answer_id = _conversation(
            user, q["question"], answer, outcome, at, rng, grounding, unsupported
        )
        querylog_append(
            conversation_id=conversation,
            question_message_id=question_id,
            answer_message_id=answer_id,
            user=user,
            username=username,
            roles=roles,
            readable_collections=readable,
            profile_key=profile,
            question=q["question"],
            standalone_question=q["question"],
            answer=answer,
            outcome=outcome,
            error="The model did not answer in time." if error else "",
            route=route,
            route_reason=reason,
            model="" if refused else "SmolLM2-135M-Instruct",
            adapter=adapter,
            retrieved=retrieved,
            used_chunks=used,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion,
            cost_estimate=cost,
            first_token_ms=None if outcome != "answered" else rng.randint(300, 1200),
            # None: no claim check ran (refusals, errors, answers from the adapter alone).
            unsupported_figures=len(grounding["unsupported"]) if grounding else None,
            grounding=grounding,
            latency_ms=latency,
            started_at=at - dt.timedelta(milliseconds=latency),
            finished_at=at,
            created_at=at,
        )
        written += 1
    return written
