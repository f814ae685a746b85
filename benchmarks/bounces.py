"""Bounce analysis accuracy on a set of real reports with expected outcomes.

    .venv/bin/python benchmarks/bounces.py [--dir /work/shared/bounces] [--misses N]

Reads `expectations.tsv` (one row per failed recipient: file, reason, kind, dsn_status,
reply_code, hardbounce, ...) and every file it names, as bytes, and runs the whole analysis
(`ace_email.analysis.mime.analyse`), so the cheap report check in front of the bounce parser is
measured too. Prints detection (a Bounce of the expected kind; a delay counts as a bounce),
the recipient rows found, the accuracy of reason, status, reply code and hard/soft, and
beside them two baselines from the same run: flufl.bounce alone (detected when it finds an
address) and a "5.1.1 only" rule for hard/soft (hard iff the report's first Status: field is
5.1.1). Then the most common reason confusions, the first `--misses` mismatching files, and
the time per message.

Expected status codes X.0.9NN are Sisimai's stand-ins for "the report gave no status"; they
are counted apart from real RFC 3463 codes.
"""

from __future__ import annotations

import argparse
import csv
import email
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from email import policy as email_policy
from pathlib import Path

from flufl.bounce import all_failures

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ace_email.analysis.mime import analyse
from ace_email.contracts.message import Bounce, BounceRecipient
from benchmarks.machine import machine_line

DEFAULT_DIR = Path("/work/shared/bounces")
_KINDS = {
    "bounce": ("bounce", "delay"),
    "feedback_report": ("feedback",),
    "feedback": ("feedback",),
    "delivery_success_dsn": ("delivered",),
    "delivered": ("delivered",),
}
_STAND_IN = re.compile(r"[245]\.0\.9\d\d")
_STATUS_FIELD = re.compile(rb"^Status:[ \t]*([245]\.\d{1,3}\.\d{1,3})", re.IGNORECASE | re.M)


@dataclass(frozen=True)
class Row:
    """One expected recipient."""

    file: str
    reason: str
    kind: str
    status: str
    reply_code: str
    hard: bool


@dataclass
class Tally:
    """count/total of one measure."""

    count: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        self.total += 1
        self.count += ok

    def __str__(self) -> str:
        share = 100 * self.count / self.total if self.total else 0.0
        return f"{self.count}/{self.total} ({share:.1f}%)"


def read_expectations(path: Path) -> dict[str, list[Row]]:
    rows: dict[str, list[Row]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as handle:
        for item in csv.DictReader(handle, delimiter="\t"):
            rows[item["file"]].append(
                Row(
                    file=item["file"],
                    reason=item["reason"],
                    kind=item["kind"],
                    status=item["dsn_status"].strip(),
                    reply_code=item["reply_code"].strip(),
                    hard=item["hardbounce"].strip() == "1",
                )
            )
    return rows


def flufl_addresses(raw: bytes) -> int:
    try:
        msg = email.message_from_bytes(raw, policy=email_policy.compat32)
        temporary, permanent = all_failures(msg)
    except Exception:
        return 0
    return len(temporary) + len(permanent)


def simple_hard(raw: bytes) -> bool:
    """What a simple checker says: hard iff the first Status: field is 5.1.1."""
    match = _STATUS_FIELD.search(raw)
    return match is not None and match.group(1) == b"5.1.1"


def describe(recipient: BounceRecipient | None) -> str:
    if recipient is None:
        return "-"
    hard = "hard" if recipient.hard else "soft"
    return (
        f"{recipient.address} {recipient.reason} {recipient.status or '-'} "
        f"{recipient.reply_code or '-'} {hard} | {recipient.diagnostic[:110]}"
    )


def main(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    table = directory / "expectations.tsv"
    if not directory.is_dir() or not table.is_file():
        print(f"error: no expectations.tsv in {directory}", file=sys.stderr)
        return 2
    expected = read_expectations(table)
    detected, rows_found, rows_total = Tally(), 0, 0
    reason, status, reply, hard = Tally(), Tally(), Tally(), Tally()
    stand_in = Counter[str]()
    flufl_detected, simple = Tally(), Tally()
    confusion = Counter[tuple[str, str]]()
    misses: list[str] = []
    timings: list[float] = []
    missing: list[str] = []
    for name, rows in expected.items():
        try:
            raw = (directory / name).read_bytes()
        except OSError:
            missing.append(name)
            raw = b""
        began = time.perf_counter()
        bounce: Bounce | None = analyse(raw).bounce
        timings.append(time.perf_counter() - began)
        kinds = _KINDS.get(rows[0].kind, (rows[0].kind,))
        found = bounce is not None and bounce.kind in kinds
        detected.add(found)
        flufl_detected.add(flufl_addresses(raw) > 0)
        got = list(bounce.recipients) if bounce is not None and found else []
        rows_total += len(rows)
        rows_found += min(len(rows), len(got))
        simple_says = simple_hard(raw)
        lines: list[str] = []
        for index, row in enumerate(rows):
            recipient = got[index] if index < len(got) else None
            ok_reason = recipient is not None and recipient.reason == row.reason
            reason.add(ok_reason)
            if not ok_reason:
                confusion[(row.reason, recipient.reason if recipient else "(none)")] += 1
            ok_status = True
            if row.status and _STAND_IN.fullmatch(row.status):
                stand_in["none" if recipient is None or recipient.status is None else "a code"] += 1
            elif row.status:
                ok_status = recipient is not None and recipient.status == row.status
                status.add(ok_status)
            ok_reply = True
            if row.reply_code:
                ok_reply = recipient is not None and str(recipient.reply_code) == row.reply_code
                reply.add(ok_reply)
            ok_hard = recipient is not None and recipient.hard == row.hard
            hard.add(ok_hard)
            simple.add(simple_says == row.hard)
            if not (ok_reason and ok_status and ok_reply and ok_hard):
                want = f"{row.reason} {row.status or '-'} {row.reply_code or '-'} "
                want += "hard" if row.hard else "soft"
                lines.append(f"    expected {want}\n         got {describe(recipient)}")
        if not found:
            got_kind = bounce.kind if bounce is not None else "None"
            lines.insert(0, f"    kind: expected {'/'.join(kinds)}, got {got_kind}")
        if lines:
            misses.append(f"  {name}\n" + "\n".join(lines))
    print(machine_line(f"bounce set {directory}"))
    print(f"files: {detected.total}, expected recipient rows: {rows_total}")
    if missing:
        print(f"files listed but not found (counted as not detected): {len(missing)}")
    print(f"detected (a Bounce of the expected kind): {detected}")
    print(f"recipient rows found: {Tally(rows_found, rows_total)}")
    print(f"reason accuracy: {reason}")
    print(f"status accuracy (real RFC 3463 codes): {status}")
    print(
        f"  rows with Sisimai's stand-in codes (no status in the report): "
        f"{sum(stand_in.values())}, we gave none: {stand_in['none']}, a code: {stand_in['a code']}"
    )
    print(f"reply code accuracy: {reply}")
    print(f"hard/soft accuracy: {hard}")
    print("baselines (same run):")
    print(f"  flufl.bounce alone, detected (finds an address): {flufl_detected}")
    print(f"  '5.1.1 only' rule, hard/soft accuracy: {simple}")
    print("reason confusions (expected -> got), top 20:")
    for (want, got_reason), count in confusion.most_common(20):
        print(f"  {count:4d}  {want} -> {got_reason}")
    if args.misses:
        print(f"first {min(args.misses, len(misses))} of {len(misses)} files with a mismatch:")
        for miss in misses[: args.misses]:
            print(miss)
    mean_ms = 1000 * statistics.fmean(timings) if timings else 0.0
    p95_ms = 1000 * sorted(timings)[int(0.95 * (len(timings) - 1))] if timings else 0.0
    total_s = sum(timings)
    print(
        f"time per message (whole analysis): mean {mean_ms:.2f} ms, p95 {p95_ms:.2f} ms "
        f"({total_s:.2f} s for {len(timings)} messages)"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", default=str(DEFAULT_DIR))
    parser.add_argument("--misses", type=int, default=0)
    sys.exit(main(parser.parse_args()))
