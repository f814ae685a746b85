"""Compare the automatic-mail detector with the corpus's `auto_heuristic` labels.

Usage: automatic_mail_report.py [CORPUS_DIR]   (default: ../shared/corpus beside the project)

Prints the counts, precision and recall of automatic mail, then every file where the detector
and the label disagree, with the detector's reasons and the label's (MANIFEST `auto_reasons`:
the header rules that made it; empty when only the sender or subject heuristics did).
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from ace_email.analysis.mime import analyse

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
TRUE_LABELS = frozenset({"1", "true", "yes"})


@dataclass(frozen=True)
class Verdict:
    file: str
    label: bool
    label_reasons: str
    found: bool
    reasons: list[str]


def judge(corpus: Path) -> list[Verdict]:
    with (corpus / "MANIFEST.tsv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    verdicts: list[Verdict] = []
    for row in rows:
        analysis = analyse((corpus / row["file"]).read_bytes())
        verdicts.append(
            Verdict(
                file=row["file"],
                label=row["auto_heuristic"].strip().lower() in TRUE_LABELS,
                label_reasons=row.get("auto_reasons", "").strip(),
                found=analysis.automatic,
                reasons=analysis.automatic_reasons,
            )
        )
    return verdicts


def ratio(part: int, whole: int) -> str:
    return f"{part / whole:.3f}" if whole else "n/a"


def report(verdicts: list[Verdict], corpus: Path) -> None:
    true_pos = sum(1 for v in verdicts if v.label and v.found)
    false_pos = [v for v in verdicts if v.found and not v.label]
    false_neg = [v for v in verdicts if v.label and not v.found]
    true_neg = len(verdicts) - true_pos - len(false_pos) - len(false_neg)
    print(f"corpus: {corpus}")
    print(f"files: {len(verdicts)}")
    print(f"true positives: {true_pos}")
    print(f"false positives: {len(false_pos)}")
    print(f"false negatives: {len(false_neg)}")
    print(f"true negatives: {true_neg}")
    print(f"precision: {ratio(true_pos, true_pos + len(false_pos))}")
    print(f"recall: {ratio(true_pos, true_pos + len(false_neg))}")
    disagreements = sorted([*false_pos, *false_neg], key=lambda v: v.file)
    print(f"\ndisagreements: {len(disagreements)}")
    for v in disagreements:
        label = "automatic" if v.label else "not automatic"
        ours = "automatic" if v.found else "not automatic"
        print(f"\n{corpus / v.file}")
        print(f"  label: {label} ({v.label_reasons or 'sender/subject heuristic or none'})")
        print(f"  ours: {ours}")
        for reason in v.reasons:
            print(f"    - {reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args(argv)
    corpus: Path = args.corpus
    if not (corpus / "MANIFEST.tsv").is_file():
        print(f"no MANIFEST.tsv in {corpus}", file=sys.stderr)
        return 2
    report(judge(corpus), corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
