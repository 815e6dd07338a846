"""Where the training code caches Hub downloads: wherever `HF_HOME` says (Launch points it at the instance's NVMe,
`/tmp/...`; the default `/root/.cache` is on the container's small root volume). Nothing in training_code may pin a
cache directory of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

TRAINING_CODE = Path(__file__).resolve().parents[2] / "training_code"
REPO_ROOT = TRAINING_CODE.parent


def test_no_training_module_pins_a_cache_directory() -> None:
    # Given every module of the training code
    pinned = {
        path.name: match.group(0)
        for path in TRAINING_CODE.glob("*.py")
        for match in [re.search(r"cache_dir\s*=|HF_HOME\s*\]?\s*=|\.cache\b|/root/", path.read_text())]
        if match
    }

    # Then none passes cache_dir, sets HF_HOME or names a home-directory cache
    assert pinned == {}


def test_a_training_process_caches_hub_files_under_hf_home(tmp_path: Path) -> None:
    # Given a training process started with HF_HOME on another disk (as Launch's Environment sets it)
    hf_home = tmp_path / "nvme" / "hf"
    probe = (
        "import json, training_code.train, training_code.evaluation; "
        "import datasets; from huggingface_hub import constants; "
        "print(json.dumps({'hub': constants.HF_HUB_CACHE, 'xet': constants.HF_XET_CACHE, "
        "'datasets': str(datasets.config.HF_DATASETS_CACHE)}))"
    )
    python_path = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    environ = {**os.environ, "HF_HOME": str(hf_home), "PYTHONPATH": python_path}
    for overriding in ("HF_HUB_CACHE", "HF_XET_CACHE", "HF_DATASETS_CACHE"):
        environ.pop(overriding, None)

    # When it imports the training code and asks where the Hub cache is
    result = subprocess.run([sys.executable, "-c", probe], env=environ, capture_output=True, text=True, timeout=300)

    # Then every cache transformers (through huggingface_hub) and datasets use is under HF_HOME
    assert result.returncode == 0, result.stderr[-2000:]
    caches = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(Path(location).is_relative_to(hf_home) for location in caches.values()), caches
