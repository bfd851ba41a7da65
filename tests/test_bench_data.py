"""The answer benchmark's question sets still match the demo documents: each fact is in its
document, each asker may read it, no dev question resembles a held-out one
(bench/data/check_answers.py, stdlib only)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["answers.json", "answers-dev.json"])
def test_the_question_sets_check_out_against_the_demo_documents(name):
    result = subprocess.run(
        [sys.executable, "bench/data/check_answers.py", "--file", f"bench/data/{name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{name}:" in result.stdout
