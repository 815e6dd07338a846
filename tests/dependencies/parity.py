"""What "the tests run what the DLC runs" means, in one place: the Python-side packages whose versions the test
environment must share with the training container's resolved set (`dlc-requirements.json`), and how to read both.

torch is the one stated exception: the DLC runs torch 2.9.0, a CUDA build; the tests run the CPU wheel on disk here
(2.13.0+cpu), the only CPU build this machine can install. Everything torch-version-specific the training code
touches (FSDP's plugin arguments, checkpoint layout) is read from transformers/accelerate, which do match.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from finetune.dlc_requirements import pinned_requirements

REPO_ROOT = Path(__file__).resolve().parents[2]
DLC_RECORD = REPO_ROOT / "dlc-requirements.json"
DEV_REQUIREMENTS = REPO_ROOT / "requirements-dev.txt"

# Exact version parity. The DLC ships transformers, tokenizers and huggingface-hub (as resolved with our
# requirements); training_code/requirements.txt installs the rest. pyarrow is compiled against numpy's ABI: pyarrow
# 26 refuses numpy 1.x at import, so the DLC's numpy<2 makes its version part of the contract.
EXACT = (
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "accelerate",
    "peft",
    "trl",
    "bitsandbytes",
    "datasets",
    "pyarrow",
)
# Major-version parity: numpy 1 vs 2 changes the ABI compiled packages are built against and the dtype rules.
MAJOR = ("numpy",)
TORCH_EXCEPTION = (
    "torch: the DLC runs 2.9.0 (CUDA 13); the tests run the CPU wheel 2.13.0+cpu, the only CPU build on this machine"
)


def dlc_resolved() -> dict[str, str]:
    """Normalised name → version of everything the DLC ends up with (its image plus our requirements)."""
    return json.loads(DLC_RECORD.read_text())["resolved"]


def installed(names: tuple[str, ...] = EXACT + MAJOR) -> dict[str, str | None]:
    """Normalised name → version installed in this interpreter's environment (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _major(version: str | None) -> str | None:
    return None if version is None else version.split(".", 1)[0]


def disagreements(versions: dict[str, str | None], resolved: dict[str, str]) -> dict[str, tuple[str | None, str]]:
    """name → (ours, the DLC's) for every parity package whose version (or, for numpy, major) differs."""
    differ: dict[str, tuple[str | None, str]] = {}
    for name in EXACT:
        if versions.get(name) != resolved[name]:
            differ[name] = (versions.get(name), resolved[name])
    for name in MAJOR:
        if _major(versions.get(name)) != _major(resolved[name]):
            differ[name] = (versions.get(name), resolved[name])
    return differ


def pinned(path: Path = DEV_REQUIREMENTS) -> dict[str, str]:
    """`name==version` pins of a requirements file and of the files it includes with `-r`, by normalised name."""
    return pinned_requirements(path)
