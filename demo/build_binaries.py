#!/usr/bin/env python3
"""Build the demo company's PDF and DOCX documents from Markdown-ish text sources.

Convention
==========
Every source lives in ``demo/sources/<collection>/<name>.md`` and starts with a
front-matter block. The ``format`` line decides the output type::

    ---
    format: pdf                 # "pdf" or "docx" (required)
    title: Business Travel Policy   # required
    doc_id: LM-POL-007          # optional metadata, printed under the title
    version: 4.0
    effective: 1 February 2025
    owner: Finance & Controlling
    classification: Internal
    ---

The output is written to ``demo/documents/<collection>/<name>.<format>``.

Body syntax (a deliberately small subset of Markdown):

* ``# Heading``, ``## Heading``, ``### Heading``  -> heading levels 1-3
* paragraphs separated by blank lines (consecutive lines are joined)
* ``- item``  -> bullet list item;  ``1. item`` -> numbered list item
* ``| a | b |`` pipe tables; the first row is the header, ``|---|`` rows are skipped
* ``> text``  -> a highlighted note
* ``**bold**`` inline emphasis

Determinism: PDFs get a fixed creation date and metadata; DOCX files get fixed
core properties and fixed ZIP timestamps. A file is only rewritten when its bytes
change, so re-running the script leaves unchanged outputs untouched.

PDFs use the built-in Helvetica font, so the text must be Latin-1; a few common
typographic characters are mapped to ASCII (see ``PDF_REPLACEMENTS``).

Usage::

    .venv/bin/python demo/build_binaries.py          # build everything
    .venv/bin/python demo/build_binaries.py --check  # exit 1 if an output is stale
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

DEMO = Path(__file__).resolve().parent
SOURCES = DEMO / "sources"
DOCUMENTS = DEMO / "documents"
COMPANY = "Lumen Mobility GmbH"
FIXED_DATE = dt.datetime(2025, 3, 1, 9, 0, 0, tzinfo=dt.UTC)
ZIP_DATE = (2025, 3, 1, 9, 0, 0)
META_KEYS = ("doc_id", "version", "effective", "owner", "classification")
META_LABELS = {
    "doc_id": "Document",
    "version": "Version",
    "effective": "Effective",
    "owner": "Owner",
    "classification": "Classification",
}
PDF_REPLACEMENTS = {
    "\u2013": "-",
    "\u2014": "-",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2026": "...",
    "\u20ac": "EUR",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2022": "-",
    "\u00a0": " ",
    "\u2212": "-",
}


# --------------------------------------------------------------------------- parsing
@dataclass
class Block:
    kind: str  # heading | para | bullet | number | table | note
    text: str = ""
    level: int = 0
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class Source:
    path: Path
    meta: dict[str, str]
    blocks: list[Block]

    @property
    def collection(self) -> str:
        return self.path.parent.name

    @property
    def fmt(self) -> str:
        return self.meta["format"]

    @property
    def output(self) -> Path:
        return DOCUMENTS / self.collection / f"{self.path.stem}.{self.fmt}"

    def meta_line(self) -> str:
        parts = [f"{META_LABELS[k]}: {self.meta[k]}" for k in META_KEYS if self.meta.get(k)]
        return " | ".join([COMPANY, *parts])


def parse_source(path: Path) -> Source:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip() != "---":
        raise ValueError(f"{path}: missing front matter")
    meta: dict[str, str] = {}
    i = 1
    while i < len(lines) and lines[i].strip() != "---":
        key, _, value = lines[i].partition(":")
        meta[key.strip()] = value.split(" #", 1)[0].strip()
        i += 1
    if meta.get("format") not in ("pdf", "docx") or not meta.get("title"):
        raise ValueError(f"{path}: front matter needs 'format: pdf|docx' and 'title'")
    return Source(path, meta, parse_body(lines[i + 1 :]))


def parse_body(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    para: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if para:
            blocks.append(Block("para", " ".join(para)))
            para.clear()
        if table:
            blocks.append(Block("table", rows=[r[:] for r in table]))
            table.clear()

    for raw in lines:
        line = raw.strip()
        if not line:
            flush()
            continue
        if line.startswith("|"):
            if para:
                flush()
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(re.fullmatch(r":?-{2,}:?", c) for c in cells):
                continue
            table.append(cells)
            continue
        if table:
            flush()
        m = re.match(r"(#{1,3})\s+(.*)", line)
        if m:
            flush()
            blocks.append(Block("heading", m.group(2), level=len(m.group(1))))
        elif line.startswith("- "):
            flush()
            blocks.append(Block("bullet", line[2:].strip()))
        elif re.match(r"\d+\.\s", line):
            flush()
            num, _, rest = line.partition(" ")
            blocks.append(Block("number", rest.strip(), level=int(num.rstrip("."))))
        elif line.startswith("> "):
            flush()
            blocks.append(Block("note", line[2:].strip()))
        elif (
            blocks
            and blocks[-1].kind in ("bullet", "number", "note")
            and not para
            and raw.startswith("  ")
        ):
            blocks[-1].text += " " + line  # continuation line of a list item
        else:
            para.append(line)
    flush()
    return blocks


def split_bold(text: str) -> list[tuple[str, bool]]:
    """'a **b** c' -> [('a ', False), ('b', True), (' c', False)]"""
    parts = text.split("**")
    return [(p, i % 2 == 1) for i, p in enumerate(parts) if p]


def plain(text: str) -> str:
    return text.replace("**", "")


# --------------------------------------------------------------------------- PDF
def build_pdf(src: Source) -> bytes:
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos
    from fpdf.fonts import FontFace

    def latin(text: str) -> str:
        for a, b in PDF_REPLACEMENTS.items():
            text = text.replace(a, b)
        text.encode("latin-1")  # fail loudly on characters Helvetica cannot show
        return text

    title = latin(src.meta["title"])
    footer_left = latin(f"{COMPANY} - {src.meta.get('classification', 'Internal')}")
    doc_id = latin(src.meta.get("doc_id", ""))

    class DocPDF(FPDF):
        def header(self) -> None:
            if self.page_no() == 1:
                return
            self.set_font("Helvetica", "", 8)
            self.set_text_color(120, 120, 120)
            self.cell(0, 5, f"{title} ({doc_id})", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.ln(4)
            self.set_text_color(0, 0, 0)

        def footer(self) -> None:
            self.set_y(-14)
            self.set_font("Helvetica", "", 8)
            self.set_text_color(120, 120, 120)
            self.cell(0, 5, footer_left, align="L")
            self.set_x(self.l_margin)
            self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="R")
            self.set_text_color(0, 0, 0)

    pdf = DocPDF(format="A4", unit="mm")
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(True, margin=20)
    pdf.set_title(title)
    pdf.set_author(COMPANY)
    pdf.set_subject(latin(f"{src.collection} collection - {src.meta.get('doc_id', '')}"))
    pdf.set_keywords(latin(f"Lumen Mobility, {src.collection}"))
    pdf.set_creator("demo/build_binaries.py")
    pdf.set_producer("fpdf2")
    pdf.set_lang("en")
    pdf.set_creation_date(FIXED_DATE)
    pdf.add_page()

    pdf.set_font("Helvetica", "B", 20)
    pdf.set_text_color(20, 60, 110)
    pdf.multi_cell(0, 9, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(90, 90, 90)
    pdf.set_font("Helvetica", "", 8.5)
    pdf.multi_cell(0, 4.5, latin(src.meta_line()), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.ln(4)

    body = 5.2
    for b in src.blocks:
        if b.kind == "heading":
            size = {1: 14, 2: 12, 3: 11}[b.level]
            if pdf.get_y() > pdf.h - 45:
                pdf.add_page()
            pdf.ln(2)
            pdf.start_section(latin(plain(b.text)), level=b.level - 1)
            pdf.set_font("Helvetica", "B", size)
            pdf.set_text_color(20, 60, 110)
            pdf.multi_cell(0, size * 0.5, latin(plain(b.text)), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_text_color(0, 0, 0)
            pdf.ln(1.5)
        elif b.kind == "para":
            pdf.set_font("Helvetica", "", 10)
            pdf.multi_cell(
                0, body, latin(b.text), markdown=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT
            )
            pdf.ln(2)
        elif b.kind in ("bullet", "number"):
            pdf.set_font("Helvetica", "", 10)
            marker = "-" if b.kind == "bullet" else f"{b.level}."
            pdf.set_x(pdf.l_margin + 3)
            pdf.cell(6, body, marker)
            pdf.multi_cell(
                pdf.epw - 9, body, latin(b.text), markdown=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT
            )
            pdf.ln(0.8)
        elif b.kind == "note":
            pdf.set_font("Helvetica", "I", 10)
            pdf.set_fill_color(236, 242, 250)
            pdf.multi_cell(
                0,
                body,
                latin(plain(b.text)),
                fill=True,
                padding=2,
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
            pdf.ln(2)
        elif b.kind == "table":
            pdf.set_font("Helvetica", "", 9)
            heading = FontFace(emphasis="BOLD", fill_color=(220, 230, 242))
            with pdf.table(
                line_height=4.8, text_align="LEFT", headings_style=heading, padding=1.2
            ) as table:
                for row in b.rows:
                    r = table.row()
                    for cell in row:
                        r.cell(latin(plain(cell)))
            pdf.ln(3)
    return bytes(pdf.output())


# --------------------------------------------------------------------------- DOCX
def build_docx(src: Source) -> bytes:
    from docx import Document
    from docx.shared import Cm, Pt, RGBColor

    doc = Document()
    cp = doc.core_properties
    cp.title = src.meta["title"]
    cp.author = COMPANY
    cp.last_modified_by = COMPANY
    cp.subject = f"{src.collection} collection"
    cp.category = src.collection
    cp.identifier = src.meta.get("doc_id", "")
    cp.version = src.meta.get("version", "")
    cp.keywords = f"Lumen Mobility, {src.collection}"
    cp.comments = "Generated by demo/build_binaries.py"
    cp.created = FIXED_DATE.replace(tzinfo=None)
    cp.modified = FIXED_DATE.replace(tzinfo=None)
    cp.last_printed = FIXED_DATE.replace(tzinfo=None)
    cp.revision = 1

    normal = doc.styles["Normal"]
    normal.font.name = "Calibri"
    normal.font.size = Pt(11)

    section = doc.sections[0]
    section.footer.paragraphs[
        0
    ].text = (
        f"{COMPANY} - {src.meta.get('classification', 'Internal')} - {src.meta.get('doc_id', '')}"
    )

    def add_runs(par, text: str) -> None:
        for chunk, bold in split_bold(text):
            par.add_run(chunk).bold = bold or None

    doc.add_heading(src.meta["title"], level=0)
    meta = doc.add_paragraph()
    run = meta.add_run(src.meta_line())
    run.italic = True
    run.font.size = Pt(9)
    run.font.color.rgb = RGBColor(0x59, 0x59, 0x59)

    for b in src.blocks:
        if b.kind == "heading":
            doc.add_heading(plain(b.text), level=b.level)
        elif b.kind == "para":
            add_runs(doc.add_paragraph(), b.text)
        elif b.kind == "bullet":
            add_runs(doc.add_paragraph(style="List Bullet"), b.text)
        elif b.kind == "number":
            # Numbers are written as text: python-docx's "List Number" style would
            # continue counting across separate lists.
            par = doc.add_paragraph()
            par.paragraph_format.left_indent = Cm(0.63)
            par.paragraph_format.first_line_indent = Cm(-0.63)
            add_runs(par, f"{b.level}.\t{b.text}")
        elif b.kind == "note":
            add_runs(doc.add_paragraph(style="Intense Quote"), b.text)
        elif b.kind == "table":
            ncols = max(len(r) for r in b.rows)
            table = doc.add_table(rows=len(b.rows), cols=ncols)
            table.style = "Light Grid Accent 1"
            for i, row in enumerate(b.rows):
                for j in range(ncols):
                    cell = table.cell(i, j)
                    cell.text = ""
                    add_runs(cell.paragraphs[0], row[j] if j < len(row) else "")
                    if i == 0:
                        for r in cell.paragraphs[0].runs:
                            r.bold = True
            doc.add_paragraph()

    raw = io.BytesIO()
    doc.save(raw)
    return normalise_zip(raw.getvalue())


def normalise_zip(data: bytes) -> bytes:
    """Rewrite a ZIP container with fixed timestamps and attributes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zi.create_system = 3
            dst.writestr(zi, src.read(info.filename), compresslevel=9)
    return out.getvalue()


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if any output is stale"
    )
    args = ap.parse_args(argv)

    stale = written = unchanged = 0
    for path in sorted(SOURCES.glob("*/*.md")):
        src = parse_source(path)
        data = build_pdf(src) if src.fmt == "pdf" else build_docx(src)
        out = src.output
        rel = out.relative_to(DEMO)
        if out.exists() and out.read_bytes() == data:
            unchanged += 1
            continue
        if args.check:
            print(f"stale: {rel}")
            stale += 1
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        written += 1
        print(f"wrote {rel} ({len(data):,} bytes)")
    if args.check:
        print(f"{stale} stale, {unchanged} up to date")
        return 1 if stale else 0
    print(f"{written} written, {unchanged} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
