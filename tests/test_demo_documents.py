"""The demo documents: complete, in every format, canaries confined to their collection."""

import json
import subprocess
import sys
from pathlib import Path

from accounts.management.commands.load_demo import COLLECTIONS

DEMO = Path(__file__).resolve().parent.parent / "demo"


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DEMO / script), *args], capture_output=True, text=True
    )


def test_manifest_matches_the_documents_and_canaries_stay_in_their_collection():
    # Extracts every document (md, txt, html, pdf, docx) and checks that each canary token is
    # found in its own collection and in no other, and each question's answer in its document.
    result = run("check_manifest.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: all checks passed" in result.stdout


def test_generated_pdf_and_docx_files_are_up_to_date_with_their_sources():
    result = run("build_binaries.py", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_demo_loader_creates_the_manifest_collections():
    manifest = json.loads((DEMO / "manifest.json").read_text())
    assert set(manifest["collections"]) == set(COLLECTIONS)
    restricted = {c["collection"] for c in manifest["canaries"]}
    assert restricted == set(COLLECTIONS) - {"company"}
    assert sum(len(c["documents"]) for c in manifest["collections"].values()) >= 24
