"""Quality gate on a run's report.json (`finetune report RUN --format json`, or s3://<bucket>/reports/<run>/).

    python3 examples/ci/quality_gate.py report.json --min-accuracy 0.80 --min-parse-rate 0.95

Passes when at least one job completed, every completed job's parse rate (share of answers that are a known label)
reaches --min-parse-rate, and the best completed job's intent accuracy reaches --min-accuracy. Standard library only:
a CI runner needs python3, not this project.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


def problems(report: dict[str, Any], min_accuracy: float, min_parse_rate: float) -> list[str]:
    """What fails the gate; empty when it passes."""
    completed = [job for job in report.get("jobs", []) if job.get("status") == "Completed"]
    if not completed:
        return [f"no completed job in run {report.get('run_id')}"]
    found = []
    for job in completed:
        parse_rate = job.get("parse_rate")
        if parse_rate is None or parse_rate < min_parse_rate:
            found.append(f"{job['job_name']}: parse rate {parse_rate} below {min_parse_rate}")
    best = max((job.get("accuracy") or 0.0 for job in completed), default=0.0)
    if best < min_accuracy:
        found.append(f"best accuracy {best:.4f} below {min_accuracy}")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Print the verdict; 0 when the gate passes, 1 when it fails."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", help="report.json")
    parser.add_argument("--min-accuracy", type=float, default=0.80)
    parser.add_argument("--min-parse-rate", type=float, default=0.95)
    args = parser.parse_args(argv)
    with open(args.report, encoding="utf-8") as handle:
        report = json.load(handle)
    for job in report.get("jobs", []):
        print(
            f"{job.get('job_name')}: {job.get('status')}, accuracy {job.get('accuracy')}, "
            f"parse rate {job.get('parse_rate')}, ${job.get('cost_usd')}"
        )
    found = problems(report, args.min_accuracy, args.min_parse_rate)
    for problem in found:
        print(f"quality gate: {problem}", file=sys.stderr)
    print("quality gate: " + ("FAILED" if found else "passed"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
