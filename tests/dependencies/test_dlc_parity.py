"""The tests train with the DLC's libraries: the installed test environment, and what a fresh clone installs from
requirements-dev.txt, equal `dlc-requirements.json`'s resolved set on every package in `parity.EXACT` (numpy: its
major version). torch is the one stated exception (`parity.TORCH_EXCEPTION`)."""

from __future__ import annotations

from importlib import metadata

import pytest

from tests.dependencies import parity


def test_the_test_environment_runs_the_dlcs_resolved_versions() -> None:
    # Given the versions installed where the tests run and the DLC's resolved set
    # When they are compared package by package
    differ = parity.disagreements(parity.installed(), parity.dlc_resolved())

    # Then none differs
    assert differ == {}, f"test environment vs DLC (ours, DLC's): {differ}; install requirements-dev.txt"


def test_a_fresh_clone_installs_the_dlcs_resolved_versions() -> None:
    # Given requirements-dev.txt with the files it includes
    pins = parity.pinned()

    # When its pins are compared with the DLC's resolved set
    differ = parity.disagreements({name: pins.get(name) for name in parity.EXACT + parity.MAJOR}, parity.dlc_resolved())

    # Then it pins exactly the DLC's versions
    assert differ == {}, f"requirements-dev.txt vs DLC (pin, DLC's): {differ}"


@pytest.mark.parametrize("name", [*parity.EXACT, *parity.MAJOR])
def test_a_version_that_drifts_from_the_dlcs_is_reported(name: str) -> None:
    # Given the DLC's resolved set and an environment that matches it but for one package's new major version
    resolved = parity.dlc_resolved()
    versions = {package: resolved[package] for package in parity.EXACT + parity.MAJOR}
    versions[name] = f"{int(resolved[name].split('.')[0]) + 1}.0.0"

    # When they are compared
    differ = parity.disagreements(versions, resolved)

    # Then exactly that package is named, with both versions
    assert differ == {name: (versions[name], resolved[name])}


def test_torch_is_the_one_stated_exception_a_cpu_build() -> None:
    # Given the DLC's torch and ours
    ours, dlcs = metadata.version("torch"), parity.dlc_resolved()["torch"]

    # Then ours is a CPU build, the DLC's a (CUDA) build of another version, as the exception states
    assert ours.endswith("+cpu"), parity.TORCH_EXCEPTION
    assert dlcs in parity.TORCH_EXCEPTION and ours.removesuffix("+cpu") in parity.TORCH_EXCEPTION


def test_the_dlcs_pyarrow_imports_next_to_the_dlcs_numpy() -> None:
    # Given the environment with the DLC's numpy major and pyarrow (the parity tests above)
    # When datasets imports pyarrow, as train.py does first
    import numpy
    import pyarrow

    # Then it loads: pyarrow 26 raises "pyarrow requires NumPy 2.0 or newer" with the DLC's numpy 1.26
    assert numpy.__version__.split(".")[0] == parity.dlc_resolved()["numpy"].split(".")[0]
    assert pyarrow.__version__ == parity.dlc_resolved()["pyarrow"]
