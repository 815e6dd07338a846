"""Fail on template-linter findings that lint-skips.toml does not accept, and on skips that match nothing.

    python .ci/lint_skips.py cfn-lint cdk.out/cfn-lint.json   # cfn-lint --format json
    python .ci/lint_skips.py checkov cdk.out/checkov.json     # checkov -o json

Skips are per rule and per resource (logical-id patterns), so a skip written for one resource never hides the same
finding on a resource added later.
"""

from __future__ import annotations

import json
import sys
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NamedTuple

SKIPS_FILE = Path(__file__).resolve().parents[1] / "lint-skips.toml"


class Finding(NamedTuple):
    rule: str
    resource: str  # logical id
    where: str
    message: str


def cfn_lint_findings(report: Any) -> list[Finding]:
    """Findings of `cfn-lint --format json` (a list of matches)."""
    return [
        Finding(
            match["Rule"]["Id"],
            match["Location"]["Path"][1] if match["Location"]["Path"][:1] == ["Resources"] else "",
            f"{match['Filename']}:{match['Location']['Start']['LineNumber']}",
            match["Message"],
        )
        for match in report
    ]


def checkov_findings(report: Any) -> list[Finding]:
    """Failed checks of `checkov -o json` (one report, or one per framework)."""
    return [
        Finding(check["check_id"], check["resource"].split(".", 1)[-1], check["file_path"], check["check_name"])
        for result in (report if isinstance(report, list) else [report])
        for check in result["results"]["failed_checks"]
    ]


READERS = {"cfn-lint": cfn_lint_findings, "checkov": checkov_findings}


def _skipped(finding: Finding, skip: dict[str, Any]) -> bool:
    return finding.rule == skip["rule"] and any(fnmatchcase(finding.resource, p) for p in skip["resources"])


def main(argv: list[str], skips_file: Path = SKIPS_FILE) -> int:
    """Print what is neither clean nor skipped, and every stale skip; 1 when there is any."""
    tool, report_path = argv
    skips = tomllib.loads(skips_file.read_text()).get(tool, [])
    findings = READERS[tool](json.loads(Path(report_path).read_text() or "[]"))
    unskipped = [f for f in findings if not any(_skipped(f, skip) for skip in skips)]
    stale = [skip for skip in skips if not any(_skipped(f, skip) for f in findings)]
    for finding in unskipped:
        print(f"{tool}: {finding.rule} {finding.resource} ({finding.where}): {finding.message}")
    for skip in stale:
        print(f"{tool}: skip {skip['rule']} {skip['resources']} in {skips_file.name} matches nothing: remove it")
    skipped = len(findings) - len(unskipped)
    print(f"{tool}: {len(findings)} findings, {skipped} skipped with a reason in {skips_file.name}")
    return 1 if unskipped or stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
