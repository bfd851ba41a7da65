"""Validate an uploaded file and extract its text with its structure (pages, headings).

Pure functions: no ORM and no settings; the caller passes `Limits`. Anything wrong with the
*file* raises `Rejected` with a sentence an admin can read. Only calls into the parsers (pypdf,
python-docx, zipfile, lxml) are wrapped; a bug in our own code still raises as itself.
"""

from __future__ import annotations

import contextlib
import functools
import html
import re
import sys
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import docx
import filetype
import pypdf
from bs4 import BeautifulSoup, Comment, Doctype, NavigableString, Tag
from bs4.element import CData, Declaration, ProcessingInstruction
from docx.shared import RGBColor
from docx.table import Table
from docx.text.hyperlink import Hyperlink
from docx.text.paragraph import Paragraph

KINDS = ("pdf", "docx", "html", "markdown", "text")

MIB = 1024 * 1024
# Bytes read for content sniffing. More than 8 KiB so that the member names of a DOCX (zip)
# are usually inside it.
HEAD_BYTES = 64 * 1024
HEADING_SEPARATOR = " > "

SUPPORTED = "Supported types: PDF, DOCX, HTML, Markdown and plain text."
EMPTY_FILE = "The file is empty."
DAMAGED_PDF = "The file is damaged or not a valid PDF."
DAMAGED_DOCX = "The file is damaged or not a valid DOCX document."
ENCRYPTED_PDF = (
    "The PDF is password-protected. Remove the password (save an unprotected copy) "
    "and upload it again."
)
LEGACY_OFFICE = (
    "The file is an encrypted or legacy Office document (.doc/.xls) — save it as DOCX or PDF "
    "(without a password) and upload it again."
)
SCANNED_PDF = (
    "No text could be extracted — the PDF seems to contain only images (scanned pages). "
    "OCR is not supported."
)

# Members smaller than this cannot hurt however well they compress; small, repetitive XML parts
# of ordinary DOCX files (styles, numbering) legitimately reach high ratios.
ZIP_RATIO_MIN_BYTES = MIB


class Rejected(Exception):
    """The file cannot be indexed; `reason` is a plain sentence an admin can read."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 25 * MIB
    max_uncompressed_bytes: int = 200 * MIB
    max_compression_ratio: int = 100
    max_text_chars: int = 5_000_000
    max_pages: int = 2000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Section:
    text: str
    heading: str
    page: int | None


@dataclass(frozen=True)
class Extracted:
    kind: str
    title: str
    sections: list[Section]
    pages: int | None

    @property
    def char_count(self) -> int:
        return sum(len(section.text) for section in self.sections)


def extract(
    path: Path,
    *,
    filename: str,
    limits: Limits = DEFAULT_LIMITS,
    on_progress: Callable[[int, int], None] | None = None,
) -> Extracted:
    """Validate the file at `path` (uploaded as `filename`) and extract its text with structure.

    Raises Rejected, with a reason for the admin, for anything that cannot be indexed.
    """
    path = Path(path)
    # Size first, from the inode: a huge upload is refused before any of it is read.
    size = path.stat().st_size
    if size == 0:
        raise Rejected(EMPTY_FILE)
    if size > limits.max_bytes:
        raise Rejected(
            f"The file is {_human_size(size)}; the limit is {_human_size(limits.max_bytes)}."
        )
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    kind = detect_kind(head, filename)
    budget = _TextBudget(limits.max_text_chars)
    if kind == "pdf":
        return _extract_pdf(path, limits=limits, budget=budget, on_progress=on_progress)
    if kind == "docx":
        return _extract_docx(path, limits=limits, budget=budget)
    text = _decode(path.read_bytes())
    if kind == "html":
        return _extract_html(text, budget=budget)
    if kind == "markdown":
        return _extract_markdown(text, budget=budget)
    return _extract_text(text, budget=budget)


# --- Detection -------------------------------------------------------------------------------

_HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
_MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
_DOCUMENT_SUFFIXES = {
    "pdf",
    "docx",
    "doc",
    "txt",
    "text",
    "md",
    "markdown",
    "html",
    "htm",
    "rtf",
    "odt",
}
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_HTML_START = re.compile(
    rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b", re.I | re.S
)
_ARCHIVES = {
    "zip", "tar", "rar", "gz", "bz2", "7z", "xz", "zst", "lz", "lz4", "lzo", "Z", "br", "cab",
    "deb", "rpm", "ar",
}  # fmt: skip


def detect_kind(head: bytes, filename: str) -> str:
    """The kind of document (one of KINDS) that `head`, the file's first bytes, starts.

    The content decides; the filename's extension only tells HTML and Markdown from plain text.
    Raises Rejected, naming what the file really is, for anything that is not a document.
    """
    if not head:
        raise Rejected(EMPTY_FILE)
    suffix = Path(filename).suffix.lower()
    # Readers accept the PDF header anywhere in the first 1 KiB, after binary junk (a MacBinary
    # header, say). Text that merely mentions "%PDF-" stays text.
    pdf_at = head.find(b"%PDF-", 0, 1024)
    if pdf_at >= 0 and (not head[:pdf_at].strip() or _looks_binary(head[:pdf_at])):
        return "pdf"
    if head.startswith(_OLE2_MAGIC):
        # Word 97-2003 and Excel files, and also *any* password-protected DOCX/XLSX: Office
        # stores encrypted OOXML inside an OLE2 container.
        raise Rejected(LEGACY_OFFICE)
    if head.startswith(_ZIP_MAGICS):
        return _detect_zip(head, suffix)
    encoding = _text_encoding(head)
    if encoding is None and _looks_binary(head):
        raise Rejected(_not_a_document(head, suffix))
    start = head.lstrip()[:64].lower()
    if start.startswith(b"{\\rtf"):
        raise Rejected(
            "The file is an RTF document, which is not supported — save it as DOCX or PDF. "
            + SUPPORTED
        )
    if encoding is not None:
        head = head.decode(encoding, errors="ignore").encode("utf-8")
    if suffix in _HTML_SUFFIXES or _HTML_START.match(head.lstrip(b"\xef\xbb\xbf")):
        return "html"
    if re.match(rb"\s*(?:<\?xml[^>]*>\s*)?<svg\b", head.lstrip(b"\xef\xbb\xbf"), re.I):
        raise Rejected("The file is an SVG image, not a document. " + SUPPORTED)
    if suffix in _MARKDOWN_SUFFIXES:
        return "markdown"
    return "text"


def _detect_zip(head: bytes, suffix: str) -> str:
    # Member names are stored in the local headers, so the first ones are in `head`. extract()
    # checks the central directory for word/document.xml before anything is decompressed.
    if b"word/" in head:
        return "docx"
    office = b"[Content_Types].xml" in head
    if office and b"xl/" in head:
        raise Rejected("The file is an Excel workbook (XLSX), not a document. " + SUPPORTED)
    if office and b"ppt/" in head:
        raise Rejected("The file is a PowerPoint presentation (PPTX), not a document. " + SUPPORTED)
    if b"application/vnd.oasis.opendocument" in head:
        raise Rejected("The file is an OpenDocument file — save it as DOCX or PDF. " + SUPPORTED)
    if b"application/epub+zip" in head:
        raise Rejected("The file is an EPUB e-book, which is not supported. " + SUPPORTED)
    if suffix == ".docx":
        return "docx"
    raise Rejected(
        "The file is a ZIP archive, not a document. Unpack it and upload the documents inside "
        "one by one."
    )


def _text_encoding(head: bytes) -> str | None:
    """The codec named by a BOM, or guessed for BOM-less UTF-16; None: UTF-8 or a legacy 8-bit."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    sample = head[:4096]
    even, odd = sample[0::2], sample[1::2]
    # Mostly-Latin UTF-16 without a BOM: a NUL in every other byte and never in the others.
    if len(sample) >= 16 and even.count(0) == 0 and odd.count(0) > 0.3 * len(odd):
        return _if_clean_text(sample, "utf-16-le")
    if len(sample) >= 16 and odd.count(0) == 0 and even.count(0) > 0.3 * len(even):
        return _if_clean_text(sample, "utf-16-be")
    return None


def _if_clean_text(sample: bytes, encoding: str) -> str | None:
    text = sample[: len(sample) // 2 * 2].decode(encoding, errors="replace")
    controls = sum(1 for ch in text if ch < " " and ch not in "\t\n\r\f")
    return encoding if controls == 0 and "\ufffd" not in text else None


_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\x0b\x0c\r\x1b")


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls > max(2, len(head) // 100)


def _not_a_document(head: bytes, suffix: str) -> str:
    guess = filetype.guess(head)
    advice = SUPPORTED
    if head.startswith(b"\x7fELF"):
        what = "a Linux program (ELF executable)"
    elif head.startswith(b"MZ"):
        what = "a Windows program (EXE)"
    elif guess is None:
        what = "binary data"
    elif guess.mime.startswith("image/"):
        what = f"a {guess.extension.upper()} image"
        advice = "Images cannot be indexed (OCR is not supported)."
    elif guess.mime.startswith("video/"):
        what = f"a video ({guess.extension.upper()})"
    elif guess.mime.startswith("audio/"):
        what = f"an audio file ({guess.extension.upper()})"
    elif guess.extension in _ARCHIVES:
        what = f"a {guess.extension.upper()} archive"
        advice = "Unpack it and upload the documents inside one by one."
    elif guess.extension == "sqlite":
        what = "an SQLite database"
    else:
        what = f"a {guess.extension.upper()} file"
    claimed = suffix.lstrip(".")
    lead = "The file is"
    if claimed in _DOCUMENT_SUFFIXES:
        lead = f"The file is named .{claimed} but is actually"
    return f"{lead} {what}, not a supported document. {advice}"


_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


def _decode(data: bytes) -> str:
    encoding = _text_encoding(data[:HEAD_BYTES])
    if encoding is not None:
        return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # UTF-8 with a few broken bytes (a bad copy and paste) stays UTF-8, or every accent in it
    # would turn into mojibake; a legacy 8-bit file has (almost) no valid UTF-8 sequences.
    valid = len(_UTF8_SEQUENCE.findall(data))
    invalid = sum(1 for b in data if b >= 0x80) - len(b"".join(_UTF8_SEQUENCE.findall(data)))
    if valid > invalid:
        return data.decode("utf-8", errors="replace")
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; latin-1 maps them to C1 controls, which
        # cleaning removes.
        return data.decode("latin-1")


# --- Shared helpers --------------------------------------------------------------------------


@contextlib.contextmanager
def _parser_errors(reason: str) -> Iterator[None]:
    """Turn a parser's failure on a bad file into Rejected.

    Parsers fail on hostile input in every way (their own errors, KeyError, ValueError, deep
    recursion, even TypeError from deep inside pypdf), so everything is caught here, and only
    parser calls go inside this block.
    """
    try:
        yield
    except Rejected:
        raise
    except Exception as exc:
        raise Rejected(reason) from exc


class _TextBudget:
    """Stops extraction as soon as the text grows past the limit (bombs that expand into text)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, chars: int) -> None:
        self.used += chars
        if self.used > self.limit:
            raise Rejected(
                f"The document has more than {self.limit:,} characters of text, the limit; "
                "split it into smaller documents."
            )


def _human_size(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:.1f}".removesuffix(".0") + " MB"
    if n >= 1024:
        return f"{n / 1024:.1f}".removesuffix(".0") + " KB"
    return f"{n} bytes"


@functools.cache
def _invisible_pattern() -> re.Pattern[str]:
    # Control and format characters (zero-width spaces and joiners, bidi overrides, the
    # invisible "tag" characters used to smuggle instructions past readers), surrogates, and
    # the supplementary variation selectors, which can also encode hidden text. Built once
    # from the Unicode database so it follows Python's Unicode version.
    ranges: list[str] = []
    start = prev = None
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        invisible = ch not in "\n\t" and (
            unicodedata.category(ch) in ("Cc", "Cf", "Cs") or 0xE0100 <= cp <= 0xE01EF
        )
        if invisible and prev is not None and cp == prev + 1:
            prev = cp
        elif invisible:
            if start is not None:
                ranges.append(_char_range(start, prev))
            start = prev = cp
    if start is not None:
        ranges.append(_char_range(start, prev))
    return re.compile("[" + "".join(ranges) + "]")


def _char_range(start: int, end: int) -> str:
    return (
        re.escape(chr(start)) if start == end else f"{re.escape(chr(start))}-{re.escape(chr(end))}"
    )


_LINE_BREAKS = str.maketrans(dict.fromkeys("\r\x0b\x0c\x85\u2028\u2029", "\n"))
_SPACES = re.compile(r"[^\S\n\t]+")  # any whitespace but newline and tab (NBSP, thin space...)


# A plain-text table's column gap: two or more spaces between words on a line, not after a
# sentence's end ("end.  Next" is a typist's habit, not a column).
_COLUMN_GAP = re.compile(r"(?<=[^\s.!?:;,]) {2,}(?=\S)")  # plain spaces: a typed layout


def _clean_text(text: str, *, columns: bool = False) -> str:
    """Normalised text: NFC, no invisible characters, single spaces, at most one blank line.

    With `columns` (plain text), a gap of two or more spaces inside a line stays two spaces: a
    fixed-width table's columns ("9 January 2026  Deadline for accruals"), which the quote and
    the prompt read row by row with their header (assistant.grounding).
    """
    text = text.replace("\r\n", "\n").translate(_LINE_BREAKS)
    text = _invisible_pattern().sub("", text)
    text = unicodedata.normalize("NFC", text)
    if columns:
        text = "  ".join(_SPACES.sub(" ", part) for part in _COLUMN_GAP.split(text))
    else:
        text = _SPACES.sub(" ", text)
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _clean_line(text: str) -> str:
    return " ".join(_clean_text(text).split())


class _Sections:
    """Collects text into sections, one per heading, with the heading path by level."""

    def __init__(self, budget: _TextBudget, *, columns: bool = False) -> None:
        self.budget = budget
        self.columns = columns  # plain text: keep column gaps (_clean_text)
        self.sections: list[Section] = []
        self._path: list[tuple[int, str]] = []
        self._heading = ""
        self._parts: list[str] = []

    def heading(self, level: int, title: str) -> None:
        title = _clean_line(title)
        if not title:
            return
        self.close()
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._path.append((level, title))
        self._heading = HEADING_SEPARATOR.join(t for _, t in self._path)

    def write(self, text: str) -> None:
        self._parts.append(text)

    def close(self) -> None:
        text = _clean_text("".join(self._parts), columns=self.columns)
        self._parts = []
        if text:
            self.budget.spend(len(text))
            self.sections.append(Section(text=text, heading=self._heading, page=None))


def _nothing_extracted(what: str) -> Rejected:
    return Rejected(f"No text could be extracted — the {what} contains no readable text.")


# --- PDF -------------------------------------------------------------------------------------


def _extract_pdf(
    path: Path,
    *,
    limits: Limits,
    budget: _TextBudget,
    on_progress: Callable[[int, int], None] | None,
) -> Extracted:
    with _parser_errors(DAMAGED_PDF):
        reader = pypdf.PdfReader(path, strict=False)
        encrypted = reader.is_encrypted
    if encrypted:
        # Many PDFs are encrypted only to restrict printing or copying, with an empty user
        # password; those open without one.
        with _parser_errors(ENCRYPTED_PDF):
            opened = reader.decrypt("")
        if opened == pypdf.PasswordType.NOT_DECRYPTED:
            raise Rejected(ENCRYPTED_PDF)
    with _parser_errors(DAMAGED_PDF):
        total = len(reader.pages)
    if total == 0:
        raise Rejected(DAMAGED_PDF + " It has no pages.")
    if total > limits.max_pages:
        raise Rejected(f"The PDF has {total:,} pages; the limit is {limits.max_pages:,}.")

    outline = _pdf_outline(reader)
    sections: list[Section] = []
    first_text = ""
    for index in range(total):
        with _parser_errors(DAMAGED_PDF):
            raw = reader.pages[index].extract_text() or ""
        lines = _pdf_page_lines(raw)
        if lines and not first_text:
            first_text = lines[0]
        sections.extend(_pdf_page_sections(lines, index, outline, budget))
        if on_progress is not None:
            on_progress(index + 1, total)
    if not sections:
        raise Rejected(SCANNED_PDF)
    return Extracted(
        kind="pdf",
        title=_pdf_title(reader) or first_text[:200],
        sections=sections,
        pages=total,
    )


@dataclass(frozen=True)
class _OutlineEntry:
    page: int  # 0-based
    title: str
    heading: str


def _pdf_outline(reader: pypdf.PdfReader) -> list[_OutlineEntry]:
    """Bookmarks as (page, heading path), sorted by page; [] when absent or broken.

    A broken outline costs the document its headings, not its indexing.
    """
    entries: list[_OutlineEntry] = []
    try:
        items = reader.outline
    except Exception:
        return []
    # Depth-first in document order, without recursion; a nested list holds the children of
    # the item just before it. Frames are [items, parent titles, last title at this level].
    stack: list[list] = [[iter(items), [], None]]
    while stack:
        frame = stack[-1]
        item = next(frame[0], None)
        if item is None:
            stack.pop()
        elif isinstance(item, list):
            parents = [*frame[1], frame[2]] if frame[2] else frame[1]
            stack.append([iter(item), parents, None])
        else:
            title, page = _outline_item(reader, item)
            frame[2] = title or None
            if title and page is not None and page >= 0:
                heading = HEADING_SEPARATOR.join([*frame[1], title])
                entries.append(_OutlineEntry(page=page, title=title, heading=heading))
    # Stable: entries on the same page stay in document order.
    return sorted(entries, key=lambda e: e.page)


def _outline_item(reader: pypdf.PdfReader, item: object) -> tuple[str, int | None]:
    try:
        return _clean_line(str(item.title or "")), reader.get_destination_page_number(item)
    except Exception:
        return "", None


_PDF_HYPHEN = re.compile(r"(\w)-\n(\w)")


def _pdf_page_lines(raw: str) -> list[str]:
    text = _clean_text(raw)
    # Rejoin words hyphenated at a line end ("poli-\ncy"), but not "Jean-\nPaul" or "2019-\n2020".
    text = _PDF_HYPHEN.sub(lambda m: m[1] + m[2] if m[2].islower() else m[0], text)
    return text.split("\n") if text else []


def _pdf_page_sections(
    lines: list[str], index: int, outline: list[_OutlineEntry], budget: _TextBudget
) -> list[Section]:
    """Split a page's lines at its bookmarks' titles; text before them keeps the earlier heading."""
    before = [e for e in outline if e.page < index]
    on_page = [e for e in outline if e.page == index]
    heading = before[-1].heading if before else ""
    # Bookmarks whose title cannot be found on the page are taken to start at its top.
    found = [e for e in on_page if any(_is_title_line(line, e.title) for line in lines)]
    for entry in on_page:
        if entry in found:
            break
        heading = entry.heading
    sections: list[Section] = []
    parts: list[str] = []

    def close() -> None:
        text = _clean_text("\n".join(parts))
        if text:
            budget.spend(len(text))
            sections.append(Section(text=text, heading=heading, page=index + 1))

    for line in lines:
        if found and _is_title_line(line, found[0].title):
            close()
            parts = []
            heading = found.pop(0).heading
            continue
        parts.append(line)
    close()
    return sections


def _is_title_line(line: str, title: str) -> bool:
    line, title = line.strip().casefold(), title.casefold()
    if line == title:
        return True
    # "2.1 Hotels" for the bookmark "Hotels".
    return line.endswith(" " + title) and re.fullmatch(r"[\d.\s]+", line[: -len(title)]) is not None


def _pdf_title(reader: pypdf.PdfReader) -> str:
    try:
        title = _clean_line(str((reader.metadata or {}).get("/Title") or ""))
    except Exception:
        return ""
    # Titles that name the file or the template say nothing about the document.
    if title.casefold() in {"untitled", "title", "document"}:
        return ""
    if re.search(r"\.(?:docx?|pdf|odt|rtf|txt|pages)$", title, re.I):
        return ""
    return title.removeprefix("Microsoft Word - ")


# --- DOCX ------------------------------------------------------------------------------------


def _check_zip(path: Path, limits: Limits) -> None:
    """Refuse a DOCX whose archive is damaged, not Word, or a decompression bomb.

    Only the central directory is read: sizes are checked before anything is decompressed.
    zipfile never inflates a member past its declared size (it truncates, then fails the
    CRC), so a lying header cannot get around these checks.
    """
    with _parser_errors(DAMAGED_DOCX), zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    names = {m.filename for m in members}
    if "word/document.xml" not in names:
        if any(n.startswith("xl/") for n in names):
            raise Rejected("The file is an Excel workbook (XLSX), not a document. " + SUPPORTED)
        if any(n.startswith("ppt/") for n in names):
            raise Rejected(
                "The file is a PowerPoint presentation (PPTX), not a document. " + SUPPORTED
            )
        raise Rejected(DAMAGED_DOCX)
    if any(m.flag_bits & 0x1 for m in members):
        raise Rejected(
            "The DOCX is password-protected. Save an unprotected copy and upload it again."
        )
    total = sum(m.file_size for m in members)
    if total > limits.max_uncompressed_bytes:
        raise Rejected(
            f"The DOCX would unpack to {_human_size(total)}, more than the limit of "
            f"{_human_size(limits.max_uncompressed_bytes)}; it was not opened."
        )
    bomb = Rejected(
        "The DOCX is compressed suspiciously well (it looks like a zip bomb); it was not opened."
    )
    for m in members:
        if (
            m.file_size > ZIP_RATIO_MIN_BYTES
            and m.file_size > m.compress_size * limits.max_compression_ratio
        ):
            raise bomb
    archive_size = path.stat().st_size
    if total > ZIP_RATIO_MIN_BYTES and total > archive_size * limits.max_compression_ratio:
        raise bomb


_DOCX_HEADING = re.compile(r"heading\s*([1-9])", re.I)


@dataclass(frozen=True)
class _DocxBlock:
    style: str = ""  # the paragraph style's name ("Heading 2") and id ("Heading2")
    style_id: str = ""
    text: str = ""
    rows: tuple[str, ...] | None = None  # set for a table: "cell | cell" per row

    @property
    def heading_level(self) -> int | None:
        """0 for the Title style, 1-9 for Heading 1-9, None for body text."""
        if self.style.casefold() == "title":
            return 0
        match = _DOCX_HEADING.fullmatch(self.style) or _DOCX_HEADING.fullmatch(self.style_id)
        return int(match[1]) if match else None


def _extract_docx(path: Path, *, limits: Limits, budget: _TextBudget) -> Extracted:
    _check_zip(path, limits)
    # Read what we need from python-docx into plain values inside the guard, then build the
    # sections outside it.
    blocks: list[_DocxBlock] = []
    raw = _TextBudget(limits.max_text_chars)
    with _parser_errors(DAMAGED_DOCX):
        document = docx.Document(str(path))
        meta_title = document.core_properties.title or ""
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                block = _DocxBlock(rows=tuple(_docx_table_rows(item)))
            else:
                style = item.style
                block = _DocxBlock(
                    style=(style.name or "") if style is not None else "",
                    style_id=(style.style_id or "") if style is not None else "",
                    text=_docx_paragraph_text(item),
                )
            # Stop reading a document that expands into too much text before holding it all.
            raw.spend(len(block.text) + sum(map(len, block.rows or ())))
            blocks.append(block)

    sections = _Sections(budget)
    title_paragraph = first_h1 = ""
    for block in blocks:
        level = block.heading_level
        if block.rows is not None:
            sections.write("\n\n" + "\n".join(block.rows) + "\n\n")
        elif level == 0:
            # The document's title, not a heading: chunks get the title in their prefix anyway.
            title_paragraph = title_paragraph or _clean_line(block.text)
            sections.close()
        elif level is not None and _clean_line(block.text):
            if level == 1 and not first_h1:
                first_h1 = _clean_line(block.text)
            sections.heading(level, block.text)
        else:
            sections.write(block.text + "\n\n")
    sections.close()
    if not sections.sections:
        raise _nothing_extracted("document")
    return Extracted(
        kind="docx",
        title=_clean_line(meta_title) or title_paragraph or first_h1,
        sections=sections.sections,
        pages=None,
    )


_WHITE = RGBColor(0xFF, 0xFF, 0xFF)


def _docx_paragraph_text(paragraph: Paragraph) -> str:
    parts: list[str] = []
    for item in paragraph.iter_inner_content():
        runs = item.runs if isinstance(item, Hyperlink) else [item]
        for run in runs:
            font = run.font
            # Hidden (w:vanish) and white text are invisible to readers; like hidden HTML, they
            # are a way to plant instructions for the assistant, so they are not indexed.
            if font.hidden or (font.color is not None and font.color.rgb == _WHITE):
                continue
            parts.append(run.text)
    return "".join(parts)


def _docx_table_rows(table: Table) -> list[str]:
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        seen: list = []  # lxml elements compare by identity
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans.
            if cell._tc in seen:
                continue
            seen.append(cell._tc)
            cells.append(_clean_line(" ".join(_docx_paragraph_text(p) for p in cell.paragraphs)))
        if any(cells):
            rows.append(" | ".join(cells))
    return rows


# --- HTML ------------------------------------------------------------------------------------

# Never document text: code, embedded objects, metadata, site navigation.
_DROPPED_TAGS = (
    "script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "math",
    "canvas", "head", "link", "meta", "base", "nav",
)  # fmt: skip
_BLOCK_TAGS = frozenset((
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
    "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header",
    "hgroup", "hr", "html", "legend", "main", "nav", "ol", "p", "section", "summary", "table",
    "tbody", "tfoot", "thead", "ul",
))  # fmt: skip
_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}
_WHITE_COLOR = (
    r"(?:white|#fff(?:fff)?|rgba?\(\s*255\s*,\s*255\s*,\s*255\s*(?:,\s*(?:1|1\.0*|100%)\s*)?\))"
)
# A declaration that hides its element from a human reader. Anchored at a declaration start, so
# that "background-color: white" is not mistaken for white text.
_HIDING_DECLARATION = re.compile(
    r"(?:^|;)\s*(?:"
    r"display\s*:\s*none"
    r"|visibility\s*:\s*(?:hidden|collapse)"
    r"|font-size\s*:\s*(?:0+(?:\.0*)?|\.0+)(?:[a-z]+|%)?\s*(?:!\s*important\s*)?(?:;|$)"
    r"|opacity\s*:\s*(?:0+(?:\.0*)?|\.0+)%?\s*(?:!\s*important\s*)?(?:;|$)"
    rf"|color\s*:\s*{_WHITE_COLOR}\s*(?:!\s*important\s*)?(?:;|$)"
    r"|(?:left|top|text-indent)\s*:\s*-\d{4,}"
    r")",
    re.I,
)


def _style_hides(style: str) -> bool:
    style = re.sub(r"/\*.*?\*/", "", style, flags=re.S)
    return _HIDING_DECLARATION.search(style) is not None


def _is_hidden(name: str, attrs: Mapping[str, object]) -> bool:
    """Whether the element `name` with these attributes hides its content from a reader."""
    if name in _DROPPED_TAGS or "hidden" in attrs:
        return True
    if str(attrs.get("aria-hidden", "")).strip().lower() == "true":
        return True
    if name == "font" and re.fullmatch(_WHITE_COLOR, str(attrs.get("color", "")).strip(), re.I):
        return True
    style = attrs.get("style")
    return bool(style) and _style_hides(str(style))


def _hidden_selectors(css: str) -> list[str]:
    """Simple class and id selectors that a <style> block hides (".note { display: none }").

    Only top-level rules count: "@media print { .x { display: none } }" hides nothing on screen.
    """
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"@[^{;]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", css)
    selectors = []
    for rule in re.finditer(r"([^{}]+)\{([^{}]*)\}", css):
        if not _style_hides(rule[2]):
            continue
        for selector in rule[1].split(","):
            selector = selector.strip()
            if re.fullmatch(r"[a-zA-Z]*[.#][\w-]+", selector):
                selectors.append(selector)
    return selectors


def _sanitize_html(soup: BeautifulSoup | Tag) -> None:
    """Remove, in place, everything a reader of the rendered page would not see.

    Security: text hidden from humans (display:none, white text, comments...) is a classic way
    to plant instructions for an assistant ("ignore previous instructions"); it must never
    reach the index. Stylesheets are not evaluated beyond simple class/id rules.
    """
    selectors = [s for style in soup.find_all("style") for s in _hidden_selectors(style.get_text())]
    for node in soup.find_all(
        string=lambda s: isinstance(
            s, Comment | CData | ProcessingInstruction | Declaration | Doctype
        )
    ):
        node.extract()
    hidden = [tag for tag in soup.find_all(True) if _is_hidden(tag.name, tag.attrs)]
    for selector in selectors:
        with contextlib.suppress(Exception):  # soupsieve rejects what it cannot parse
            hidden.extend(soup.select(selector))
    for tag in hidden:
        if not tag.decomposed:
            tag.decompose()


def _extract_html(text: str, *, budget: _TextBudget) -> Extracted:
    with _parser_errors("The file is damaged or not a valid HTML page."):
        soup = BeautifulSoup(text, "lxml")
    title_tag = soup.find("title")
    title = _clean_line(title_tag.get_text()) if title_tag is not None else ""
    _sanitize_html(soup)
    if not title:
        h1 = soup.find("h1")
        title = _clean_line(h1.get_text(" ")) if h1 is not None else ""
    walker = _HtmlWalker(_Sections(budget))
    try:
        walker.walk(soup)
    except RecursionError:
        raise Rejected("The page is nested too deeply to be read.") from None
    walker.sections.close()
    if not walker.sections.sections:
        raise _nothing_extracted("page")
    return Extracted(kind="html", title=title, sections=walker.sections.sections, pages=None)


class _HtmlWalker:
    """Writes the visible text of a (sanitised) tree into sections, split at h1-h6.

    Blocks are separated by a blank line; list items, table rows and <br> by a line break.
    """

    def __init__(self, sections: _Sections) -> None:
        self.sections = sections
        self._pending = 0  # newlines owed before the next text
        self._started = False

    def _break(self, newlines: int) -> None:
        self._pending = max(self._pending, newlines)

    def _text(self, text: str) -> None:
        if not text.strip():
            # Whitespace between blocks is layout; inside a line it separates words.
            if text and self._started and not self._pending:
                self.sections.write(" ")
            return
        if self._started and self._pending:
            self.sections.write("\n" * self._pending)
        self._pending = 0
        self._started = True
        self.sections.write(text)

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                self._text(re.sub(r"\s+", " ", str(child)))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name in _HEADING_TAGS:
                self.sections.heading(_HEADING_TAGS[name], child.get_text(" "))
                self._started = False
                self._pending = 0
            elif name == "br":
                self._break(1)
            elif name == "pre":
                self._break(2)
                self._text(child.get_text())
                self._break(2)
            elif name == "li":
                self._break(1)
                self._text("- ")
                self.walk(child)
                self._break(1)
            elif name == "tr":
                cells = [
                    _clean_line(cell.get_text(" "))
                    for cell in child.find_all(["td", "th"], recursive=False)
                ]
                if any(cells):
                    self._break(1)
                    self._text(" | ".join(cells))
                    self._break(1)
            elif name in _BLOCK_TAGS:
                self._break(2)
                self.walk(child)
                self._break(2)
            else:
                self.walk(child)


# --- Markdown --------------------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")
_OPEN_TAG = re.compile(r"<([A-Za-z][\w:-]*)(?=[\s/>])[^<>]*>")
_ANY_TAG = re.compile(r"</?[A-Za-z][\w:-]*(?=[\s/>])[^<>]*>")
_VOID_TAGS = frozenset((
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
))  # fmt: skip


def _extract_markdown(text: str, *, budget: _TextBudget) -> Extracted:
    text = _clean_text(text)
    front_title, text = _front_matter(text)
    lines = list(_markdown_lines(text))
    sections = _Sections(budget)
    first_h1 = ""
    skip_next = False
    for i, (line, in_code) in enumerate(lines):
        if skip_next:
            skip_next = False
            continue
        level, title = None, ""
        atx = None if in_code else _ATX.match(line)
        below = lines[i + 1] if i + 1 < len(lines) else ("", True)
        if atx and atx[2]:
            level, title = len(atx[1]), atx[2]
        elif not in_code and not below[1] and _setext_heading(line, below[0]):
            # "Title" over "=====" (level 1) or "-----" (level 2).
            level, title, skip_next = (1 if "=" in below[0] else 2), line, True
        if level is not None:
            if level == 1 and not first_h1:
                first_h1 = _clean_line(title)
            sections.heading(level, title)
        elif in_code or not _TABLE_RULE.match(line):
            sections.write(line + "\n")
    sections.close()
    if not sections.sections:
        raise _nothing_extracted("document")
    return Extracted(
        kind="markdown", title=front_title or first_h1, sections=sections.sections, pages=None
    )


def _setext_heading(line: str, below: str) -> bool:
    return (
        bool(_SETEXT.match(below))
        and bool(line.strip())
        and not re.match(r"\s*(?:[-*+>|]|\d+[.)])\s", line)  # list items, quotes, tables
    )


def _front_matter(text: str) -> tuple[str, str]:
    """(title, rest) for a document opening with a YAML front-matter block."""
    match = re.match(r"---\n(.*?)\n---(?:\n|$)", text, re.S)
    if match is None:
        return "", text
    title = re.search(r"^title:\s*(.+)$", match[1], re.M)
    return (_clean_line(title[1].strip("\"'")) if title else ""), text[match.end() :]


def _markdown_lines(text: str) -> Iterator[tuple[str, bool]]:
    """(line, inside a code fence) for the document, with hidden HTML removed outside code."""
    prose: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        marker = _FENCE.match(line)
        if fence is None and marker:
            yield from ((p, False) for p in _strip_markdown_html("\n".join(prose)).split("\n"))
            prose = []
            fence = marker[1][0] * len(marker[1])
        elif fence is not None:
            if marker and marker[1].startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            else:
                yield line, True
        else:
            prose.append(line)
    yield from ((p, False) for p in _strip_markdown_html("\n".join(prose)).split("\n"))


def _strip_markdown_html(text: str) -> str:
    """Markdown prose without comments, hidden HTML elements (and their text), or tags."""
    text = re.sub(r"<!--.*?(?:-->|$)", "", text, flags=re.S)
    kept: list[str] = []
    position = search_from = 0
    while match := _OPEN_TAG.search(text, search_from):
        search_from = match.end()
        if not _opening_tag_hides(match[0], match[1].lower()):
            continue
        end = match.end()
        if match[1].lower() not in _VOID_TAGS and not match[0].endswith("/>"):
            end = _closing_tag_end(text, match[1], match.end())
        kept.append(text[position : match.start()])
        position = search_from = end
    kept.append(text[position:])
    return _ANY_TAG.sub("", "".join(kept))


_ATTRIBUTE = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")


def _opening_tag_hides(source: str, name: str) -> bool:
    attributes = source[len(name) + 1 :].rstrip(">").rstrip("/")
    attrs = {
        m[1].lower(): html.unescape(m[2] or m[3] or m[4] or "")
        for m in _ATTRIBUTE.finditer(attributes)
    }
    return _is_hidden(name, attrs)


def _closing_tag_end(text: str, name: str, start: int) -> int:
    """End of the tag closing the element `name` opened before `start`; the text end if none."""
    depth = 1
    pattern = re.compile(rf"<(/?){re.escape(name)}(?=[\s/>])[^<>]*>", re.I)
    for match in pattern.finditer(text, start):
        depth += -1 if match[1] else 1
        if depth == 0:
            return match.end()
    # An unclosed hidden element hides everything after it in a browser too.
    return len(text)


# --- Plain text ------------------------------------------------------------------------------

_UNDERLINE = re.compile(r"^\s*(={3,}|-{3,})\s*$")


def _extract_text(text: str, *, budget: _TextBudget) -> Extracted:
    lines = _clean_text(text, columns=True).split("\n")
    sections = _Sections(budget, columns=True)
    title = ""
    first_line = next((i for i, line in enumerate(lines) if line.strip()), None)
    skip = False
    for i, line in enumerate(lines):
        if skip:
            skip = False
            continue
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        level = None
        if line.strip() and _UNDERLINE.match(next_line) and len(line) <= 120:
            level = 1 if next_line.strip()[0] == "=" else 2
            skip = True
        elif _is_caps_heading(line, lines[i - 1] if i else ""):
            level = 1
        if level is None:
            sections.write(line + "\n")
            continue
        if i == first_line:
            title = _clean_line(line)
        sections.heading(level, line)
    sections.close()
    if not sections.sections:
        raise _nothing_extracted("file")
    return Extracted(kind="text", title=title, sections=sections.sections, pages=None)


def _is_caps_heading(line: str, previous: str) -> bool:
    """A short ALL-CAPS line after a blank line, such as "TRAVEL POLICY" or "3. EXPENSES"."""
    line = line.strip()
    letters = [ch for ch in line if ch.isalpha()]
    return (
        not previous.strip()
        and 3 <= len(line) <= 80
        and len(letters) >= 3
        and line == line.upper()
        and line[-1] not in ".,;"
    )
