"""Property-based tests (Hypothesis; hardening issue, part 7): hostile input gets our typed
rejections, never a crash.

- Text extraction on arbitrary bytes under any filename: an `Extracted` within the limits, or
  `Rejected` with a reason; no other exception. Hidden HTML never leaks into the text.
- Chunking of arbitrary text: every chunk within the token budget and the model's limit, in
  order, non-empty, deterministic.
- The chat socket: arbitrary JSON and text frames never close or crash the consumer; each bad
  frame is answered with a documented error frame, and the socket still answers a ping.
- The upload API: arbitrary multipart fields and files, and raw bodies that are not multipart
  at all, get a 4xx with a reason or a documented result, never a 500.

Example counts are bounded (settings below) so the module runs in about a minute; a hang is
caught by pytest's timeout, not by a timing assertion. Hypothesis keeps failing examples in
.hypothesis/ (git-ignored) and replays them first.
"""

from __future__ import annotations

import asyncio
import json
import os
import unicodedata
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.capabilities import ADMINISTRATOR
from ingestion.chunking import MODEL_MAX_TOKENS, chunk_sections, load_tokenizer
from ingestion.extraction import KINDS, Extracted, Limits, Rejected, Section, extract
from tests.factories import CollectionFactory, RoleFactory, UserFactory

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # The same examples on every run, so that CI is reproducible: a failure is a bug, not bad
    # luck. Explore new inputs locally with HYPOTHESIS_EXPLORE=1 (docs/development.md).
    derandomize=not os.environ.get("HYPOTHESIS_EXPLORE"),
)
LIMITS = Limits(max_bytes=256 * 1024, max_text_chars=200_000, max_pages=20)

FILENAMES = st.sampled_from(
    ["doc.pdf", "doc.docx", "page.html", "notes.md", "notes.txt", "x", "a.htm", "b.markdown"]
)
# Bytes that look like the start of each kind, so mutations reach the parsers, not only sniffing.
HEADS = st.sampled_from(
    [b"", b"%PDF-1.4\n", b"PK\x03\x04", b"<!DOCTYPE html><html>", b"# Title\n\n", b"\xff\xfe",
     b"\xef\xbb\xbf", b"<svg", b"{\\rtf1", b"<?xml version='1.0'?>"]
)  # fmt: skip
GOOD = Path(__file__).resolve().parent / "data" / "good"


def _extract_bytes(tmp_path_factory, data: bytes, filename: str) -> Extracted | Rejected:
    path = tmp_path_factory.mktemp("fuzz") / "upload"
    path.write_bytes(data)
    try:
        return extract(path, filename=filename, limits=LIMITS)
    except Rejected as rejected:
        return rejected


def _check_extracted(result: Extracted | Rejected) -> None:
    if isinstance(result, Rejected):
        assert isinstance(result.reason, str) and result.reason.strip()
        return
    assert result.kind in KINDS
    assert result.sections
    assert result.char_count <= LIMITS.max_text_chars
    for section in result.sections:
        for ch in section.text:
            if ch not in "\n\t":
                assert unicodedata.category(ch) not in ("Cc", "Cf", "Cs"), repr(ch)


# --- extraction ------------------------------------------------------------------------------


@FUZZ
@given(head=HEADS, body=st.binary(max_size=4096), filename=FILENAMES)
def test_extraction_of_arbitrary_bytes_yields_text_or_a_reason(
    tmp_path_factory, head, body, filename
):
    _check_extracted(_extract_bytes(tmp_path_factory, head + body, filename))


@FUZZ
@given(
    name=st.sampled_from(sorted(p.name for p in GOOD.iterdir() if p.is_file())),
    cuts=st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=16)), max_size=6),
)
def test_extraction_of_mutated_real_documents_yields_text_or_a_reason(tmp_path_factory, name, cuts):
    data = bytearray((GOOD / name).read_bytes())
    for at, junk in cuts:
        at %= len(data) + 1
        data[at : at + len(junk)] = junk
    _check_extracted(_extract_bytes(tmp_path_factory, bytes(data[: LIMITS.max_bytes]), name))


# Control characters would make the file binary (rejected, rightly): printable text only.
VISIBLE = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="<>&"), max_size=80
)
HIDING = st.sampled_from(
    ['<span style="display:none">{}</span>', '<div hidden>{}</div>',
     '<p style="color: #FFFFFF">{}</p>', "<!-- {} -->", '<font color="white">{}</font>',
     '<i style="font-size:0">{}</i>', '<b aria-hidden="true">{}</b>',
     '<p style="visibility:hidden">{}</p>', "<script>{}</script>"]
)  # fmt: skip


@FUZZ
@given(before=VISIBLE, after=VISIBLE, hiding=HIDING, kind=st.sampled_from(["page.html", "n.md"]))
def test_hidden_html_never_reaches_the_extracted_text(
    tmp_path_factory, before, after, hiding, kind
):
    secret = "QUOKKA-SECRET-93"
    page = f"<p>{before}</p>\n\n{hiding.format(secret)}\n\n<p>{after} visible end</p>\n"
    if kind.endswith(".html"):
        page = f"<!DOCTYPE html><html><body>{page}</body></html>"
    result = _extract_bytes(tmp_path_factory, page.encode("utf-8", "surrogatepass"), kind)
    _check_extracted(result)
    assert isinstance(result, Extracted)  # "visible end" is always there
    assert all(secret not in s.text for s in result.sections)
    assert secret not in result.title


# --- chunking --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


# Arbitrary characters mixed with words, spaces and paragraph breaks, so that the splitter's
# separators and long runs without any both occur.
SECTION_TEXT = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40),
        st.sampled_from(
            [" ", "\n", "\n\n", ". ", "word ", "Überweisung ", "数据", "🙂", "x" * 300]
        ),
    ),
    max_size=120,
).map("".join)


@FUZZ
@given(
    texts=st.lists(SECTION_TEXT, min_size=1, max_size=3),
    title=st.text(max_size=300),
    heading=st.text(max_size=300),
    sizes=st.sampled_from([(200, 40), (64, 16), (32, 0), (8, 4), (1, 0)]),
)
def test_chunks_of_arbitrary_text_respect_every_limit(tokenizer, texts, title, heading, sizes):
    max_tokens, overlap = sizes
    sections = [Section(text=t, heading=heading, page=n or None) for n, t in enumerate(texts)]
    chunks = chunk_sections(
        sections, title=title, tokenizer=tokenizer, max_tokens=max_tokens, overlap_tokens=overlap
    )
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text.strip()
        assert chunk.token_count <= MODEL_MAX_TOKENS
        text_tokens = len(tokenizer(chunk.text, add_special_tokens=False)["input_ids"])
        assert text_tokens <= max_tokens
        assert chunk.embedding_text.endswith(chunk.text)
        assert (chunk.heading, chunk.page) in {(s.heading, s.page) for s in sections}
    again = chunk_sections(
        sections, title=title, tokenizer=tokenizer, max_tokens=max_tokens, overlap_tokens=overlap
    )
    assert again == chunks
    if not any(t.strip() for t in texts):
        assert chunks == []


# --- the chat socket -------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FRAME_DICTS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["ask", "stop", "ping", "pong", "", "ASK"]) | JSON_VALUES,
        "id": JSON_VALUES,
        "text": JSON_VALUES,
        "conversation": st.integers() | JSON_VALUES,
    },
)
RAW_FRAMES = st.one_of(
    FRAME_DICTS.map(json.dumps),
    JSON_VALUES.map(json.dumps),
    # Mostly not JSON at all; a binary frame. (The test client cannot send an empty frame.)
    st.text(min_size=1, max_size=200),
    st.binary(min_size=1, max_size=200),
)
SERVER_TYPES = {"hello", "status", "queued", "delta", "done", "stopped", "error", "pong"}


@pytest.fixture
def chatter(transactional_db):
    role = RoleFactory(name="Staff", reads=[CollectionFactory(name="Empty", slug="empty")])
    return UserFactory(username="fuzzy", roles=[role])


@pytest.mark.slow
@settings(FUZZ, max_examples=25)
@given(frames=st.lists(RAW_FRAMES, min_size=1, max_size=8))
def test_arbitrary_frames_never_crash_the_chat_consumer(chatter, frames):
    from tests.test_chat import connect

    async def run() -> list[dict]:
        ws = await connect(chatter)
        for frame in frames:
            if isinstance(frame, bytes):
                await ws.send_to(bytes_data=frame)
            else:
                await ws.send_to(text_data=frame)
        await ws.send_json_to({"type": "ping", "id": "fuzz-end"})
        received = []
        while True:
            output = await ws.receive_output(timeout=20)
            assert output["type"] == "websocket.send", output  # never closed on us
            frame = json.loads(output["text"])
            received.append(frame)
            if frame == {"type": "pong", "id": "fuzz-end"}:
                break
        await ws.disconnect()
        return received

    for frame in asyncio.run(run()):
        assert frame["type"] in SERVER_TYPES, frame
        if frame["type"] == "error":
            assert isinstance(frame["message"], str) and frame["message"]
            assert "Something went wrong" not in frame["message"], frame  # no unexpected crash


# --- the upload API --------------------------------------------------------------------------

FIELD_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["sales", "1", "999999999999999999999", "²", "٣", "2024-13-45T10:00", "-1"]),
)


@pytest.fixture
def uploader(transactional_db):
    CollectionFactory(name="Sales", slug="sales")
    client = Client()
    client.force_login(UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)]))
    return client


def _assert_plain_refusal_or_result(response) -> None:
    assert response.status_code < 500, response.content[:500]
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body["error"], str) and body["error"]
    else:
        for result in body["results"]:
            assert result["outcome"] in (
                "created",
                "new_version",
                "unchanged",
                "duplicate",
                "refused",
            )
            if result["outcome"] == "refused":
                assert result["document"]["reason"]


@pytest.mark.slow
@settings(FUZZ, max_examples=40)
@given(
    fields=st.dictionaries(
        st.sampled_from(
            ["collection", "document", "supersedes", "valid_from", "valid_until", "title", "other"]
        ),
        FIELD_TEXT,
    ),
    files=st.lists(st.tuples(st.text(max_size=40), HEADS, st.binary(max_size=512)), max_size=3),
)
def test_arbitrary_uploads_get_a_reason_never_a_server_error(uploader, fields, files):
    import io

    payload: dict = dict(fields)
    uploads = []
    for name, head, body in files:
        upload = io.BytesIO(head + body)
        upload.name = name or "unnamed"
        uploads.append(upload)
    if uploads:
        payload["file"] = uploads
    _assert_plain_refusal_or_result(uploader.post("/api/documents/", payload))


@pytest.mark.slow
@settings(FUZZ, max_examples=30)
@given(
    body=st.binary(max_size=1024),
    content_type=st.sampled_from(
        [
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "application/json",
            "text/plain",
            "multipart/form-data; boundary=",
        ]
    ),
)
def test_malformed_request_bodies_get_a_reason_never_a_server_error(uploader, body, content_type):
    response = uploader.generic("POST", "/api/documents/", data=body, content_type=content_type)
    _assert_plain_refusal_or_result(response)
