"""The committed DLC check record still describes `training_code/requirements.txt` (offline; `make check-dlc`
refreshes it with the package index), and the check refuses resolutions that move a pin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune import dlc_requirements as check

RERUN = (
    f"run `{check.COMMAND}` (it needs the package index and a Python {check.DLC_PYTHON}; "
    f"DLC_PYTHON=/path/to/python{check.DLC_PYTHON} if it is not on PATH) and commit {check.RECORD.name}"
)


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads(check.RECORD.read_text())


def _report(versions: dict[str, str]) -> dict:
    """The part of a pip installation report (`pip install --report`) that the check reads."""
    return {"install": [{"metadata": {"name": name, "version": version}} for name, version in versions.items()]}


def test_the_record_was_made_from_the_current_training_requirements(record) -> None:
    assert record["requirements_sha256"] == check.requirements_sha256(), (
        f"{check.REQUIREMENTS.relative_to(check.REPO_ROOT)} changed since the DLC check last ran: {RERUN}"
    )


def test_the_record_was_made_against_the_dlc_the_check_describes(record) -> None:
    expected = {"image": check.DLC_IMAGE, "python": check.DLC_PYTHON, "pins": list(check.DLC_PINS)}
    assert record["dlc"] == expected, f"the DLC's pins changed since the check last ran: {RERUN}"


def test_the_recorded_resolution_keeps_every_dlc_pin_and_every_requirement_pin(record) -> None:
    summary = check.summarize(_report(record["resolved"]))

    assert summary["kept"] == record["kept"]
    assert set(summary["kept"]) == {"torch", "transformers", "numpy", "protobuf"}
    assert summary["requirements"] == check.pinned_requirements()


def test_a_resolution_that_replaces_the_images_torch_fails_the_check(record) -> None:
    with pytest.raises(check.CheckFailed, match=r"torch==2\.9\.0 became 2\.10\.0"):
        check.summarize(_report({**record["resolved"], "torch": "2.10.0"}))


def test_a_resolution_that_moves_one_of_our_pins_fails_the_check(record, tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\npeft==0.21.2  # adapters\nrouge-score\n")

    with pytest.raises(check.CheckFailed, match="peft"):
        check.summarize(_report({**record["resolved"], "peft": "0.22.0"}), requirements)


def test_the_record_names_what_the_requirements_upgrade_over_the_image(record) -> None:
    upgrades = record["upgrades_over_the_image"]

    assert all(upgrades[name]["image"] == check.DLC_SHIPS[name] for name in upgrades)
    assert all(record["resolved"][name] == upgrades[name]["installed"] for name in upgrades)
