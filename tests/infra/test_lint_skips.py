"""`make lint` accepts a template-linter finding only where lint-skips.toml names its rule and resource."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from stacks.packaging import REPO_ROOT

SKIPS = """
[[checkov]]
rule = "CKV_AWS_18"
resources = ["DataAccessLogs*"]
reason = "the access-log bucket cannot log to itself"
"""


@pytest.fixture(scope="module")
def lint_skips() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lint_skips", REPO_ROOT / ".ci" / "lint_skips.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(lint_skips: ModuleType, tmp_path: Path, *failed: tuple[str, str]) -> int:
    checks = [
        {"check_id": rule, "resource": f"AWS::S3::Bucket.{resource}", "file_path": "/x.json", "check_name": "n"}
        for rule, resource in failed
    ]
    (tmp_path / "report.json").write_text(json.dumps({"results": {"failed_checks": checks}}))
    (tmp_path / "skips.toml").write_text(SKIPS)
    return lint_skips.main(["checkov", str(tmp_path / "report.json")], skips_file=tmp_path / "skips.toml")


def test_a_finding_on_a_resource_its_skip_names_passes(lint_skips, tmp_path) -> None:
    assert _run(lint_skips, tmp_path, ("CKV_AWS_18", "DataAccessLogs12AB")) == 0


def test_the_same_rule_on_a_resource_the_skip_does_not_name_fails(lint_skips, tmp_path) -> None:
    assert _run(lint_skips, tmp_path, ("CKV_AWS_18", "DataAccessLogs12AB"), ("CKV_AWS_18", "NewBucket34CD")) == 1


def test_a_skip_that_matches_no_finding_fails_so_the_file_holds_only_what_is_true(lint_skips, tmp_path) -> None:
    assert _run(lint_skips, tmp_path) == 1
