"""One spelling across code and docs: `utilization` and `summarize` (AWS's own metric names spell `GPUUtilization`),
so a search for a name finds every use of it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
OTHER_SPELLING = re.compile(r"utilis|summaris", re.IGNORECASE)


def test_the_tree_spells_utilization_and_summarize_one_way() -> None:
    # Given every tracked text file
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    # When they are searched for the other spelling
    found = [
        f"{name}:{number}"
        for name in tracked.splitlines()
        if name.endswith((".py", ".md", ".json", ".toml", ".txt")) and (REPO_ROOT / name).is_file()
        for number, line in enumerate((REPO_ROOT / name).read_text(errors="replace").splitlines(), 1)
        if OTHER_SPELLING.search(line) and name != "tests/infra/test_one_spelling.py"
    ]
    # Then there is none
    assert found == []
