#!/usr/bin/env python3
"""Verify demo/manifest.json against the demo company's documents.

Checks
------
* every listed file exists, lies in its collection's folder and has the declared format;
  every file under demo/documents/ is listed;
* text can be extracted from every document (md/txt raw, html via BeautifulSoup
  ``get_text()``, pdf via pypdf, docx via python-docx paragraphs + tables) and each has
  150-900 words;
* format rules: >= 26 documents, >= 4 per collection, >= 4 per format, >= 3 formats per
  collection, >= 2 multi-page PDFs, HTML pages are full pages with <h1>/<h2>/<p> and at
  least one <table>, DOCX files use real heading styles, every PDF/DOCX has a source in
  demo/sources/;
* canaries: >= 5 per restricted collection, spread over >= 3 documents; each token appears
  verbatim (case-sensitive) in its own document, and in NO document of any other collection
  (checked case-insensitively, so the company-wide collection cannot leak restricted facts);
  each fact sentence appears in its document (whitespace-normalised);
* questions: >= 3 per collection; each ``answer_contains`` appears verbatim (case-sensitive)
  in its document.

Exit status 0 when everything passes, 1 with a list of problems otherwise.

Usage::

    .venv/bin/python demo/check_manifest.py [--verbose]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

DEMO = Path(__file__).resolve().parent
MANIFEST = DEMO / "manifest.json"
FORMATS = ("md", "txt", "html", "pdf", "docx")
COLLECTIONS = ("company", "sales", "hr", "engineering", "finance")
RESTRICTED = ("sales", "hr", "engineering", "finance")
MIN_DOCS, MIN_PER_COLLECTION, MIN_PER_FORMAT, MIN_FORMATS_PER_COLLECTION = 26, 4, 4, 3
MIN_WORDS, MAX_WORDS = 150, 900
MIN_CANARIES, MIN_CANARY_DOCS, MIN_QUESTIONS, MIN_MULTIPAGE_PDFS = 5, 3, 3, 2


# --------------------------------------------------------------------------- extraction
def extract_text(path: Path) -> str:
    fmt = path.suffix.lstrip(".").lower()
    if fmt in ("md", "txt"):
        return path.read_text(encoding="utf-8")
    if fmt == "html":
        from bs4 import BeautifulSoup

        return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser").get_text()
    if fmt == "pdf":
        from pypdf import PdfReader

        return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
    if fmt == "docx":
        import docx

        d = docx.Document(str(path))
        parts = [p.text for p in d.paragraphs]
        for table in d.tables:
            for row in table.rows:
                parts.extend(cell.text for cell in row.cells)
        return "\n".join(parts)
    raise ValueError(f"unsupported format: {path}")


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def pdf_pages(path: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(path).pages)


def docx_heading_styles(path: Path) -> set[str]:
    import docx

    return {
        p.style.name
        for p in docx.Document(str(path)).paragraphs
        if p.style is not None and p.style.name.startswith(("Heading", "Title"))
    }


def source_format(path: Path) -> str | None:
    for line in path.read_text(encoding="utf-8").splitlines()[1:20]:
        if line.startswith("format:"):
            return line.partition(":")[2].split("#")[0].strip()
    return None


# --------------------------------------------------------------------------- checks
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Verify demo/manifest.json")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every document")
    args = ap.parse_args(argv)

    errors: list[str] = []

    def fail(msg: str) -> None:
        errors.append(msg)

    try:
        manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"FAIL: cannot read {MANIFEST}: {exc}")
        return 1

    if manifest.get("company") != "Lumen Mobility GmbH":
        fail("manifest: 'company' must be 'Lumen Mobility GmbH'")
    collections = manifest.get("collections", {})
    if set(collections) != set(COLLECTIONS):
        fail(f"manifest: collections must be exactly {COLLECTIONS}, got {sorted(collections)}")

    # ---- documents
    texts: dict[str, str] = {}  # file -> extracted text
    doc_collection: dict[str, str] = {}  # file -> collection
    by_collection: dict[str, list[str]] = defaultdict(list)
    format_counts: Counter[str] = Counter()
    multipage_pdfs = 0
    html_with_table = 0

    for slug, coll in collections.items():
        for key in ("name", "description", "documents"):
            if not coll.get(key):
                fail(f"{slug}: missing '{key}'")
        for doc in coll.get("documents", []):
            rel = doc.get("file", "")
            fmt = doc.get("format", "")
            if not doc.get("title"):
                fail(f"{rel}: missing title")
            if rel in doc_collection:
                fail(f"{rel}: listed twice")
                continue
            if not rel.startswith(f"documents/{slug}/"):
                fail(f"{rel}: must live in documents/{slug}/")
            if fmt not in FORMATS:
                fail(f"{rel}: unknown format '{fmt}'")
            if Path(rel).suffix.lstrip(".") != fmt:
                fail(f"{rel}: extension does not match format '{fmt}'")
            path = DEMO / rel
            if not path.is_file():
                fail(f"{rel}: file does not exist")
                continue
            try:
                text = extract_text(path)
            except Exception as exc:
                fail(f"{rel}: text extraction failed: {exc!r}")
                continue
            words = len(text.split())
            if not MIN_WORDS <= words <= MAX_WORDS:
                fail(f"{rel}: {words} words, expected {MIN_WORDS}-{MAX_WORDS}")
            texts[rel] = text
            doc_collection[rel] = slug
            by_collection[slug].append(rel)
            format_counts[fmt] += 1
            extra = ""
            if fmt == "pdf":
                pages = pdf_pages(path)
                multipage_pdfs += pages > 1
                extra = f", {pages} pages"
            elif fmt == "html":
                raw = path.read_text(encoding="utf-8").lower()
                for tag in ("<html", "<head", "<title", "<body", "<h1", "<h2", "<p"):
                    if tag not in raw:
                        fail(f"{rel}: HTML page lacks {tag}>")
                html_with_table += "<table" in raw
            elif fmt == "docx":
                styles = docx_heading_styles(path)
                if not any(s.startswith("Heading") for s in styles):
                    fail(f"{rel}: DOCX has no paragraphs in a Heading style")
                extra = f", styles {sorted(styles)}"
            if fmt in ("pdf", "docx"):
                src = DEMO / "sources" / slug / f"{path.stem}.md"
                if not src.is_file():
                    fail(f"{rel}: no source {src.relative_to(DEMO)}")
                elif (declared := source_format(src)) != fmt:
                    fail(f"{rel}: source {src.relative_to(DEMO)} declares format {declared!r}")
            if args.verbose:
                print(f"  {rel}: {fmt}, {words} words{extra}")

    on_disk = {str(p.relative_to(DEMO)) for p in (DEMO / "documents").rglob("*") if p.is_file()}
    for rel in sorted(on_disk - set(doc_collection)):
        fail(f"{rel}: file exists but is not listed in the manifest")
    for src in sorted((DEMO / "sources").glob("*/*.md")):
        fmt = source_format(src)
        out = DEMO / "documents" / src.parent.name / f"{src.stem}.{fmt}"
        if not out.is_file():
            missing = out.relative_to(DEMO)
            fail(f"{src.relative_to(DEMO)}: output {missing} missing - run build_binaries.py")

    # ---- counts
    total = len(doc_collection)
    if total < MIN_DOCS:
        fail(f"only {total} documents, need at least {MIN_DOCS}")
    for slug in COLLECTIONS:
        docs = by_collection.get(slug, [])
        fmts = {Path(d).suffix.lstrip(".") for d in docs}
        if len(docs) < MIN_PER_COLLECTION:
            fail(f"{slug}: {len(docs)} documents, need at least {MIN_PER_COLLECTION}")
        if len(fmts) < MIN_FORMATS_PER_COLLECTION:
            need = MIN_FORMATS_PER_COLLECTION
            fail(f"{slug}: formats {sorted(fmts)}, need at least {need} different")
    for fmt in FORMATS:
        if format_counts[fmt] < MIN_PER_FORMAT:
            fail(f"format {fmt}: {format_counts[fmt]} documents, need at least {MIN_PER_FORMAT}")
    if multipage_pdfs < MIN_MULTIPAGE_PDFS:
        fail(f"only {multipage_pdfs} multi-page PDFs, need at least {MIN_MULTIPAGE_PDFS}")
    if html_with_table < 1:
        fail("no HTML document contains a <table>")

    collection_text = {
        slug: "\n".join(texts[d] for d in by_collection.get(slug, [])) for slug in COLLECTIONS
    }
    collection_lower = {slug: t.lower() for slug, t in collection_text.items()}

    # ---- canaries
    canaries = manifest.get("canaries", [])
    per_coll: Counter[str] = Counter()
    canary_docs: dict[str, set[str]] = defaultdict(set)
    seen_tokens: set[str] = set()
    for i, c in enumerate(canaries):
        slug, token, rel = c.get("collection"), c.get("token", ""), c.get("document", "")
        label = f"canary #{i} ({token!r})"
        if slug not in RESTRICTED:
            fail(f"{label}: collection must be one of {RESTRICTED}, got {slug!r}")
            continue
        for key in ("fact", "token", "question", "document"):
            if not c.get(key):
                fail(f"{label}: missing '{key}'")
        if token.lower() in seen_tokens:
            fail(f"{label}: token used by more than one canary")
        seen_tokens.add(token.lower())
        if doc_collection.get(rel) != slug:
            fail(f"{label}: document {rel!r} is not a listed document of collection {slug}")
            continue
        per_coll[slug] += 1
        canary_docs[slug].add(rel)
        if token not in texts[rel]:
            fail(f"{label}: token not found verbatim in {rel}")
        if token not in c.get("fact", ""):
            fail(f"{label}: token is not part of the fact sentence")
        if normalise(c.get("fact", "")) not in normalise(texts[rel]):
            fail(f"{label}: fact sentence not found in {rel}")
        for other in COLLECTIONS:
            if other == slug:
                continue
            if token.lower() in collection_lower[other]:
                where = [d for d in by_collection[other] if token.lower() in texts[d].lower()]
                fail(f"{label}: LEAK - token of '{slug}' also appears in '{other}': {where}")
    for slug in RESTRICTED:
        if per_coll[slug] < MIN_CANARIES:
            fail(f"{slug}: {per_coll[slug]} canaries, need at least {MIN_CANARIES}")
        if len(canary_docs[slug]) < MIN_CANARY_DOCS:
            fail(
                f"{slug}: canaries only in {len(canary_docs[slug])} documents, "
                f"spread them over at least {MIN_CANARY_DOCS}"
            )

    # ---- questions
    questions = manifest.get("questions", [])
    q_per_coll: Counter[str] = Counter()
    for i, q in enumerate(questions):
        slug, rel, ans = q.get("collection"), q.get("document", ""), q.get("answer_contains", "")
        label = f"question #{i} ({q.get('question', '')[:50]!r})"
        if not q.get("question") or not ans:
            fail(f"{label}: missing 'question' or 'answer_contains'")
            continue
        if doc_collection.get(rel) != slug:
            fail(f"{label}: document {rel!r} is not a listed document of collection {slug!r}")
            continue
        q_per_coll[slug] += 1
        if ans not in texts[rel]:
            fail(f"{label}: answer_contains {ans!r} not found verbatim in {rel}")
    for slug in COLLECTIONS:
        if q_per_coll[slug] < MIN_QUESTIONS:
            fail(f"{slug}: {q_per_coll[slug]} questions, need at least {MIN_QUESTIONS}")

    # ---- report
    print(f"documents: {total}")
    for slug in COLLECTIONS:
        fc = Counter(Path(d).suffix.lstrip(".") for d in by_collection.get(slug, []))
        detail = ", ".join(f"{f} {fc[f]}" for f in FORMATS if fc[f])
        print(
            f"  {slug:<12} {len(by_collection.get(slug, [])):>2} docs ({detail}); "
            f"{per_coll.get(slug, 0)} canaries in {len(canary_docs.get(slug, ()))} docs; "
            f"{q_per_coll.get(slug, 0)} questions"
        )
    print(
        "formats: "
        + ", ".join(f"{f} {format_counts[f]}" for f in FORMATS)
        + f"; multi-page PDFs: {multipage_pdfs}"
    )
    print(f"canaries: {len(canaries)}, questions: {len(questions)}")
    if errors:
        print(f"\nFAIL: {len(errors)} problem(s)")
        for e in errors:
            print(f"  - {e}")
        return 1
    print("\nOK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
