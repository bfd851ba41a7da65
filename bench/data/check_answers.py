#!/usr/bin/env python3
"""Check bench/data/answers.json (or the development set) against the demo company (stdlib only).

answers.json is the held-out evaluation set; answers-dev.json is the development set that
prompts, quote selection and thresholds are tuned against. ``--file PATH`` checks another file
with the same structure; any file other than answers.json counts as a development set, whose ids
start with "dev-" (dev-company-01, dev-none-01).

Checks
------
* the file has "about", "answerable" and "unanswerable"; every id is unique;
* answerable: the collection is one of the five; the document is listed under that collection
  in demo/manifest.json and exists; "facts" is a non-empty list of distinct strings; facts[0]
  occurs verbatim (case-sensitive) in the document's text and does not occur in the question;
* every asker is a demo user from accounts/management/commands/load_demo.py (USERS), and for
  answerable questions one of the user's roles reads the collection (ROLES / BUILTIN_READS in
  the same file, read with ``ast`` so the mapping is never copied by hand);
* no question equals (ignoring case, spacing and punctuation) or closely resembles a question
  or canary question in demo/manifest.json, and no two questions here are the same;
* development set only: no question equals or closely resembles a question of answers.json;
* unanswerable: none of the key terms listed in UNANSWERABLE_TERMS below occurs in any demo
  document (a heuristic check that the answer really is absent);
* minimum counts: >= 48 answerable, >= 7 per restricted collection, >= 14 for company,
  >= 14 unanswerable.

Document text: .md/.txt are read as they are; .html is reduced to its text with html.parser;
.pdf/.docx are represented by their text source demo/sources/<slug>/<stem>.md (the file
demo/build_binaries.py builds them from).

Facts[0] that also occur in another document are reported as notes, not errors.

Usage: python3 bench/data/check_answers.py [--file PATH] [--verbose]
Exit status 0 when everything passes, 1 otherwise.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSWERS = Path(__file__).resolve().parent / "answers.json"
DEMO = ROOT / "demo"
MANIFEST = DEMO / "manifest.json"
LOAD_DEMO = ROOT / "accounts" / "management" / "commands" / "load_demo.py"

COLLECTIONS = ("company", "sales", "hr", "engineering", "finance")
MIN_ANSWERABLE = 48
MIN_PER_COLLECTION = {"company": 14, "sales": 7, "hr": 7, "engineering": 7, "finance": 7}
MIN_UNANSWERABLE = 14
SIMILARITY_LIMIT = 0.85  # difflib ratio above which a question counts as a rewording

# Terms whose presence in any demo document would suggest the question is answerable after
# all. Matched case-insensitively on word boundaries. Every unanswerable id must have an entry;
# dev-none-* ids belong to the development set answers-dev.json.
UNANSWERABLE_TERMS = {
    "none-01": ["garage", "parking space", "parking spot", "car park"],
    "none-02": ["dog", "dogs", "pets", "animal"],
    "none-03": ["wi-fi", "wifi", "wlan", "wireless", "guest network"],
    "none-04": ["company car", "company cars", "car allowance", "list price"],
    "none-05": ["sabbatical", "sabbaticals"],
    "none-06": ["relocation", "relocate", "moving allowance"],
    "none-07": ["wedding", "marriage", "marry", "special leave"],
    "none-08": ["christmas party", "holiday party", "company party", "summer party"],
    "none-09": ["13th", "christmas bonus", "weihnachtsgeld", "holiday pay", "thirteenth"],
    "none-10": [
        "charging point",
        "charging points",
        "charging station",
        "wallbox",
        "electric car",
        "electric cars",
        "ev charging",
    ],
    "none-11": [
        "stock option",
        "stock options",
        "employee share",
        "employee shares",
        "esop",
        "share plan",
    ],
    "none-12": ["shower", "showers", "changing room", "locker room"],
    "none-13": ["github", "gitlab", "bitbucket", "repository", "repositories", "repo", "repos"],
    "none-14": ["duns", "d-u-n-s"],
    "none-15": ["first aid", "first-aid", "first aider", "first aiders"],
    "none-16": ["dress code", "attire", "dress"],
    "none-17": ["election", "elections", "elected"],
    "none-18": ["bereavement", "funeral", "death", "compassionate"],
    "dev-none-01": [
        "meeting room",
        "meeting rooms",
        "room booking",
        "conference room",
        "conference rooms",
    ],
    "dev-none-02": ["business card", "business cards", "visiting card", "visiting cards"],
    "dev-none-03": ["shuttle", "shuttles", "shuttle bus"],
    "dev-none-04": ["data protection officer", "datenschutzbeauftragter", "privacy officer"],
    "dev-none-05": [
        "computer glasses",
        "screen glasses",
        "bildschirmbrille",
        "eye test",
        "eye examination",
        "optician",
    ],
    "dev-none-06": ["anniversary", "anniversaries", "long service", "long-service", "jubilee"],
    "dev-none-07": ["bildungsurlaub", "educational leave", "education leave", "training leave"],
    "dev-none-08": [
        "company doctor",
        "occupational physician",
        "occupational health",
        "betriebsarzt",
        "medical check",
    ],
    "dev-none-09": ["aws", "amazon web services", "azure", "google cloud", "gcp"],
    "dev-none-10": ["bosch", "shimano", "brose", "bafang", "yamaha"],
    "dev-none-11": ["market share"],
    "dev-none-12": [
        "credit rating",
        "creditreform",
        "rating agency",
        "moody's",
        "standard & poor's",
    ],
    "dev-none-13": ["iban", "bic", "swift", "account number"],
    "dev-none-14": ["smoking", "smokers", "smoking area", "cigarette", "cigarettes"],
    "dev-none-15": ["company run", "firmenlauf", "marathon", "running team", "fun run"],
    "dev-none-16": [
        "language course",
        "language courses",
        "language classes",
        "german lessons",
        "german classes",
    ],
    "dev-none-17": ["attrition", "turnover", "fluctuation", "leavers"],
}


# --------------------------------------------------------------------------- documents
class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def document_text(rel: str) -> str:
    """Text of demo/<rel>; PDF and DOCX are read from their markdown source."""
    path = DEMO / rel
    suffix = path.suffix.lower()
    if suffix in (".md", ".txt"):
        return path.read_text(encoding="utf-8")
    if suffix == ".html":
        parser = _TextOnly()
        parser.feed(path.read_text(encoding="utf-8"))
        return "".join(parser.parts)
    if suffix in (".pdf", ".docx"):
        slug = path.parent.name
        return (DEMO / "sources" / slug / f"{path.stem}.md").read_text(encoding="utf-8")
    raise ValueError(f"unsupported format: {rel}")


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def contains(text: str, needle: str) -> bool:
    return needle in text or squash(needle) in squash(text)


def question_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def rewordings(qid: str, key: str, others: list[str], label: str) -> list[str]:
    """Errors for each of `others` that `key` (a question_key) closely resembles."""
    errors = []
    for other in others:
        ratio = difflib.SequenceMatcher(None, key, question_key(other)).ratio()
        if ratio >= SIMILARITY_LIMIT:
            errors.append(
                f"{qid}: question is a rewording of {label} {other!r} (similarity {ratio:.2f})"
            )
    return errors


# --------------------------------------------------------------------------- load_demo.py
def _literal(node: ast.AST):
    """Like ast.literal_eval, but a bare name (ADMINISTRATOR) evaluates to its identifier."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}
    raise ValueError(f"unexpected node in load_demo.py: {ast.dump(node)[:80]}")


def demo_access() -> dict[str, set[str]]:
    """username -> collections that user's roles read, from load_demo.py."""
    tree = ast.parse(LOAD_DEMO.read_text(encoding="utf-8"))
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("ROLES", "BUILTIN_READS", "USERS"):
                found[target.id] = _literal(node.value)
    missing = {"ROLES", "BUILTIN_READS", "USERS"} - found.keys()
    if missing:
        raise SystemExit(f"load_demo.py: could not find {sorted(missing)}")
    reads = {**found["ROLES"], **found["BUILTIN_READS"]}
    access: dict[str, set[str]] = {}
    for username, _full_name, roles, _shows in found["USERS"]:
        access[username] = {slug for role in roles for slug in reads.get(role, [])}
    return access


# --------------------------------------------------------------------------- checks
def parse_args(argv: list[str]) -> tuple[Path, bool]:
    """(file to check, verbose) from ``[--file PATH] [--verbose]``."""
    path, verbose = ANSWERS, False
    args = iter(argv)
    for arg in args:
        if arg == "--verbose":
            verbose = True
        elif arg == "--file":
            value = next(args, None)
            if value is None:
                raise SystemExit("--file needs a path")
            path = Path(value)
        elif arg.startswith("--file="):
            path = Path(arg.removeprefix("--file="))
        else:
            raise SystemExit(f"unknown argument {arg!r}; usage: [--file PATH] [--verbose]")
    return path.resolve(), verbose


def main() -> int:
    path, verbose = parse_args(sys.argv[1:])
    errors: list[str] = []
    notes: list[str] = []

    held_out = path == ANSWERS
    prefix = "" if held_out else "dev-"  # the development set's ids start with "dev-"
    if not path.exists():
        raise SystemExit(f"{path}: no such file")
    data = json.loads(path.read_text(encoding="utf-8"))
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    access = demo_access()

    for key in ("about", "answerable", "unanswerable"):
        if key not in data:
            errors.append(f"missing top-level key {key!r}")
    if not isinstance(data.get("about"), str) or len(data.get("about", "")) < 100:
        errors.append("'about' must be a paragraph of text")
    answerable = data.get("answerable", [])
    unanswerable = data.get("unanswerable", [])

    listed = {
        slug: {doc["file"] for doc in entry["documents"]}
        for slug, entry in manifest["collections"].items()
    }
    all_docs = sorted(f for files in listed.values() for f in files)
    texts = {rel: document_text(rel) for rel in all_docs}

    manifest_questions = [q["question"] for q in manifest.get("questions", [])]
    manifest_questions += [c["question"] for c in manifest.get("canaries", [])]
    manifest_keys = {question_key(q): q for q in manifest_questions}
    # the development set must not reword the held-out questions either
    held_out_questions = []
    if not held_out:
        held_out_data = json.loads(ANSWERS.read_text(encoding="utf-8"))
        held_out_questions = [
            q["question"]
            for q in held_out_data.get("answerable", []) + held_out_data.get("unanswerable", [])
        ]
    held_out_keys = {question_key(q): q for q in held_out_questions}

    # ids and question texts
    seen_ids: set[str] = set()
    seen_questions: dict[str, str] = {}
    for item in answerable + unanswerable:
        qid = item.get("id", "")
        if not qid:
            errors.append(f"item without id: {item}")
        elif qid in seen_ids:
            errors.append(f"{qid}: duplicate id")
        seen_ids.add(qid)
        question = item.get("question", "")
        if not question.strip():
            errors.append(f"{qid}: empty question")
            continue
        key = question_key(question)
        if key in seen_questions:
            errors.append(f"{qid}: same question as {seen_questions[key]}")
        seen_questions[key] = qid
        if key in manifest_keys:
            errors.append(f"{qid}: question equals a manifest question: {manifest_keys[key]!r}")
        errors.extend(rewordings(qid, key, manifest_questions, "manifest question"))
        if key in held_out_keys:
            errors.append(
                f"{qid}: question equals an answers.json question: {held_out_keys[key]!r}"
            )
        errors.extend(rewordings(qid, key, held_out_questions, "answers.json question"))
        asker = item.get("asker")
        if asker not in access:
            errors.append(f"{qid}: asker {asker!r} is not a demo user in load_demo.py")

    # answerable
    counts = dict.fromkeys(COLLECTIONS, 0)
    for item in answerable:
        qid = item.get("id", "?")
        slug = item.get("collection")
        rel = item.get("document", "")
        facts = item.get("facts")
        if slug not in COLLECTIONS:
            errors.append(f"{qid}: unknown collection {slug!r}")
            continue
        counts[slug] += 1
        if not qid.startswith(f"{prefix}{slug}-"):
            errors.append(f"{qid}: id should start with '{prefix}{slug}-'")
        if rel not in listed.get(slug, set()):
            errors.append(
                f"{qid}: {rel!r} is not a document of collection {slug!r} in the manifest"
            )
            continue
        if not (DEMO / rel).exists():
            errors.append(f"{qid}: {rel} does not exist")
            continue
        asker = item.get("asker")
        if asker in access and slug not in access[asker]:
            errors.append(
                f"{qid}: asker {asker!r} may not read {slug!r} "
                f"(reads {sorted(access[asker]) or 'nothing'})"
            )
        if (
            not isinstance(facts, list)
            or not facts
            or not all(isinstance(f, str) and f.strip() for f in facts)
        ):
            errors.append(f"{qid}: facts must be a non-empty list of non-empty strings")
            continue
        if len(set(facts)) != len(facts):
            errors.append(f"{qid}: duplicate strings in facts")
        fact = facts[0]
        if not contains(texts[rel], fact):
            errors.append(f"{qid}: facts[0] {fact!r} not found verbatim in {rel}")
        if fact.lower() in item.get("question", "").lower():
            errors.append(f"{qid}: facts[0] {fact!r} appears in the question itself")
        if len(fact) < 3:
            errors.append(f"{qid}: facts[0] {fact!r} is too short to be specific")
        elsewhere = [d for d in all_docs if d != rel and contains(texts[d], fact)]
        if elsewhere:
            notes.append(f"{qid}: {fact!r} also occurs in {', '.join(elsewhere)}")

    # unanswerable
    for item in unanswerable:
        qid = item.get("id", "?")
        if not qid.startswith(f"{prefix}none-"):
            errors.append(f"{qid}: unanswerable ids should start with '{prefix}none-'")
        terms = UNANSWERABLE_TERMS.get(qid)
        if not terms:
            errors.append(f"{qid}: no key terms in UNANSWERABLE_TERMS to check absence with")
            continue
        for term in terms:
            pattern = re.compile(r"(?<!\w)" + re.escape(term) + r"(?!\w)", re.IGNORECASE)
            hits = [d for d in all_docs if pattern.search(texts[d])]
            if hits:
                errors.append(f"{qid}: key term {term!r} occurs in {', '.join(hits)}")
    unanswerable_ids = {i.get("id") for i in unanswerable}
    for qid in UNANSWERABLE_TERMS:
        if qid.startswith(f"{prefix}none-") and qid not in unanswerable_ids:
            errors.append(f"UNANSWERABLE_TERMS has {qid!r}, which is not in {path.name}")

    # counts
    if len(answerable) < MIN_ANSWERABLE:
        errors.append(f"only {len(answerable)} answerable questions (need {MIN_ANSWERABLE})")
    for slug, minimum in MIN_PER_COLLECTION.items():
        if counts[slug] < minimum:
            errors.append(f"only {counts[slug]} answerable questions for {slug} (need {minimum})")
    if len(unanswerable) < MIN_UNANSWERABLE:
        errors.append(f"only {len(unanswerable)} unanswerable questions (need {MIN_UNANSWERABLE})")

    summary = ", ".join(f"{slug} {n}" for slug, n in counts.items())
    print(
        f"{path.name}: {len(answerable)} answerable ({summary}), {len(unanswerable)} unanswerable"
    )
    if verbose or errors:
        for note in notes:
            print(f"note: {note}")
    if errors:
        for error in errors:
            print(f"ERROR: {error}")
        return 1
    print(f"OK ({len(notes)} facts also occur in another document; --verbose lists them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
