"""The answerable check's threshold: what each value of CHAT_ANSWERABLE_MIN_YES would have done.

    cd /work/main && CHAT_ANSWERABLE_MIN_YES=0 .venv/bin/python bench/answers.py \\
        --models qwen2.5-coder-1.5b --dev
    .venv/bin/python bench/answerable.py bench/results/answers-dev-<date>.json

With CHAT_ANSWERABLE_MIN_YES=0 the chat never refuses on the yes/no check, answers every
question, and records the check's confidence (P(yes) / (P(yes) + P(no)) of its first token) in
each query-log entry. Replayed here for each threshold t: an answerable question keeps its fact
when it was answered right and its confidence is at least t; an unanswerable one is refused when
its confidence is below t or the answer itself said the documents do not say. Prints the table
and the threshold that maximises facts held + unanswerable refused (the two answer-quality
targets, weighed alike), the lowest of equals. Run it on the development questions only: the
chosen value is then measured on the held-out set by bench/answers.py, which is the figure to
report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import table

THRESHOLDS = [round(0.05 * n, 2) for n in range(0, 20)] + [0.97, 0.99]


def replay(rows: list[dict], threshold: float) -> tuple[float, float]:
    """(facts held %, unanswerable refused %) had the chat refused below `threshold`."""
    answerable = [r for r in rows if r["kind"] == "answer"]
    unanswerable = [r for r in rows if r["kind"] == "none"]

    def answered(row: dict) -> bool:
        confidence = row.get("answerable")
        return confidence is None or confidence >= threshold

    held = sum(1 for r in answerable if r["answer_ok"] and answered(r))
    refused = sum(1 for r in unanswerable if r["refused"] or not answered(r))
    return 100 * held / len(answerable), 100 * refused / len(unanswerable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a bench/answers.py JSON run at min_yes 0")
    args = parser.parse_args()
    data = json.loads(args.run.read_text())
    for result in data["results"]:
        rows = result["rows"]
        if result.get("answerable_min_yes", 0.5) > 0:
            raise SystemExit(
                f"{args.run}: run at CHAT_ANSWERABLE_MIN_YES={result['answerable_min_yes']}; "
                "the check refused some questions, so their answers are missing (run at 0)"
            )
        missing = sum(1 for r in rows if r["kind"] != "canary" and r.get("answerable") is None)
        figures = {t: replay(rows, t) for t in THRESHOLDS}
        best = max(THRESHOLDS, key=lambda t: (sum(figures[t]), -t))
        print(f"\n{result['model']}: {args.run.name}, {missing} questions without a confidence")
        print(
            table(
                ["min yes", "facts held %", "refused %", "sum"],
                [[t, *figures[t], sum(figures[t])] for t in THRESHOLDS],
                markdown=True,
            )
        )
        print(f"best: {best} (facts {figures[best][0]:.1f} %, refused {figures[best][1]:.1f} %)")


if __name__ == "__main__":
    main()
