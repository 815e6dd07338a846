"""Check that `training_code/requirements.txt` installs on top of the Hugging Face PyTorch training DLC without
replacing what the image ships and the training code depends on (torch's CUDA build above all), and record it.

    python -m finetune.dlc_requirements --python python3.12     # `make check-dlc`

Inside the DLC the training toolkit runs `pip install -r requirements.txt` before the script. If a pin there needs
another torch, pip replaces the image's CUDA build with a PyPI one; numpy 2 or protobuf 7 break packages the image
compiled against the old ones. So the check asks pip to resolve the requirements *together with* the DLC's own pins
(`pip install --dry-run --ignore-installed --report`), with the DLC's Python in a throwaway virtual environment and
with the package index only (no machine-local pip configuration): a resolution exists only if no pinned package has
to move. The result goes to `dlc-requirements.json` (committed): the requirements file's hash, the pins, and every
resolved version. A fast offline test fails when the requirements file no longer matches the recorded hash.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO_ROOT / "training_code" / "requirements.txt"
RECORD = REPO_ROOT / "dlc-requirements.json"
COMMAND = "make check-dlc"

# huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04, from
# aws/deep-learning-containers huggingface/pytorch/training/docker/2.9/py3/cu130/Dockerfile.gpu (and its base,
# pytorch/training/docker/2.9/py3/cu130/Dockerfile.gpu: Python 3.12, torch 2.9.0).
DLC_IMAGE = "huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04"
DLC_PYTHON = "3.12"
# What the image pins and our requirements must not move.
DLC_PINS = ("torch==2.9.0", "transformers==5.3.0", "numpy<2", "protobuf>=6.33.5,<7")
# What else the image ships at a fixed version (its Dockerfile's ARGs). Our requirements may upgrade these (they
# are pure Python and nothing in the image is built against them); the record says which ones they do.
DLC_SHIPS = {
    "datasets": "4.5.0",
    "huggingface-hub": "1.10.0",
    "accelerate": "1.12.0",
    "trl": "0.28.0",
    "peft": "0.18.1",
}


class CheckFailed(Exception):
    """The requirements cannot be installed on the DLC as they are (pip's explanation in the message)."""


def requirements_sha256(path: Path = REQUIREMENTS) -> str:
    """Hash of the requirements file's bytes: any edit, even a comment, asks for a new check."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pinned_requirements(path: Path = REQUIREMENTS) -> dict[str, str]:
    """The `name==version` pins of a requirements file and of the files it includes with `-r`, by normalised name."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if text.startswith("-r"):
            pins.update(pinned_requirements(path.parent / text.removeprefix("-r").strip()))
            continue
        requirement = Requirement(text)
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if exact:
            pins[canonicalize_name(requirement.name)] = exact[0]
    return pins


def resolve(python: str, requirements: Path = REQUIREMENTS) -> tuple[dict[str, Any], str]:
    """pip's installation report for the requirements plus the DLC pins, resolved by `python` (the DLC's version)
    in a throwaway virtual environment; `CheckFailed` when pip finds no resolution."""
    with tempfile.TemporaryDirectory(prefix="dlc-check-") as scratch:
        venv = Path(scratch) / "venv"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        venv_python = venv / "bin" / "python"
        version = subprocess.run(
            [str(venv_python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if version != DLC_PYTHON:
            raise CheckFailed(f"{python} is Python {version}; the DLC runs Python {DLC_PYTHON}")
        report_path = Path(scratch) / "report.json"
        # The package index alone decides, as inside the image: no machine-local find-links, constraints or indexes.
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        environment.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
        command = [
            str(venv_python),
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report_path),
            "-r",
            str(requirements),
            *DLC_PINS,
        ]
        result = subprocess.run(command, env=environment, capture_output=True, text=True)
        if result.returncode != 0:
            raise CheckFailed(
                f"pip cannot install {requirements.relative_to(REPO_ROOT)} next to the DLC's pins "
                f"{', '.join(DLC_PINS)}:\n{result.stderr.strip()}"
            )
        pip_version = subprocess.run(
            [str(venv_python), "-m", "pip", "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[1]
        return json.loads(report_path.read_text()), pip_version


def summarize(report: dict[str, Any], requirements: Path = REQUIREMENTS) -> dict[str, Any]:
    """The record's versions from a pip installation report; `CheckFailed` if a DLC pin or one of ours moved."""
    resolved: dict[str, Any] = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in report.get("install", [])
    }
    kept = {}
    for pin in map(Requirement, DLC_PINS):
        version = resolved.get(canonicalize_name(pin.name))
        if version is None or not pin.specifier.contains(version, prereleases=True):
            raise CheckFailed(f"the DLC's {pin} became {version}")
        kept[canonicalize_name(pin.name)] = version
    pinned = pinned_requirements(requirements)
    moved = {name: (version, resolved.get(name)) for name, version in pinned.items() if resolved.get(name) != version}
    if moved:
        raise CheckFailed(f"pip resolved other versions than {requirements.name} pins (pin, resolved): {moved}")
    return {
        "kept": kept,
        "requirements": dict(sorted(pinned.items())),
        "upgrades_over_the_image": {
            name: {"image": shipped, "installed": resolved[name]}
            for name, shipped in sorted(DLC_SHIPS.items())
            if resolved.get(name, shipped) != shipped
        },
        "resolved": dict(sorted(resolved.items())),
    }


def run_check(python: str, *, record: Path = RECORD, requirements: Path = REQUIREMENTS) -> dict[str, Any]:
    """Resolve, summarize and write the record; returns it."""
    started = time.monotonic()
    report, pip_version = resolve(python, requirements)
    content = {
        "requirements_file": requirements.relative_to(REPO_ROOT).as_posix(),
        "requirements_sha256": requirements_sha256(requirements),
        "dlc": {"image": DLC_IMAGE, "python": DLC_PYTHON, "pins": list(DLC_PINS)},
        "checked": datetime.now(UTC).date().isoformat(),
        "pip": pip_version,
        "seconds": round(time.monotonic() - started, 1),
        **summarize(report, requirements),
    }
    record.write_text(json.dumps(content, indent=2) + "\n")
    return content


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: run the check, write the record, exit non-zero when the requirements would replace a DLC pin."""
    parser = argparse.ArgumentParser(prog="python -m finetune.dlc_requirements", description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="python3.12", help=f"a Python {DLC_PYTHON} interpreter (the DLC's)")
    args = parser.parse_args(argv)
    try:
        content = run_check(args.python)
    except CheckFailed as error:
        print(f"DLC requirements check FAILED: {error}", file=sys.stderr)
        return 1
    except FileNotFoundError as error:
        print(f"DLC requirements check needs a Python {DLC_PYTHON} interpreter: {error}", file=sys.stderr)
        return 2
    print(
        f"{content['requirements_file']} installs on {DLC_IMAGE} keeping "
        + ", ".join(f"{name} {version}" for name, version in content["kept"].items())
        + f" ({content['seconds']} s). Wrote {RECORD.relative_to(REPO_ROOT)}; commit it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
