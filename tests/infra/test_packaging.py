"""The training code tar.gz is reproducible: same sources, same bytes, same asset hash."""

from __future__ import annotations

import hashlib
import tarfile
import time
from pathlib import Path

from stacks.packaging import REPO_ROOT, build_source_tarball, stage_lambda_package


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sources(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "train.py").write_text("print('train')\n")
    (source / "pkg" / "data.py").write_text("ROWS = 1\n")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\x00junk")
    return source


def test_two_builds_of_the_same_sources_are_byte_identical(tmp_path: Path) -> None:
    source = _sources(tmp_path)
    first = _digest(build_source_tarball(source, tmp_path / "a.tar.gz"))
    # Touching files (new mtimes) must not change the archive.
    time.sleep(0.01)
    for path in source.rglob("*.py"):
        path.touch()
    second = _digest(build_source_tarball(source, tmp_path / "b.tar.gz"))
    assert first == second


def test_editing_a_file_changes_the_archive(tmp_path: Path) -> None:
    source = _sources(tmp_path)
    before = _digest(build_source_tarball(source, tmp_path / "a.tar.gz"))
    (source / "pkg" / "data.py").write_text("ROWS = 2\n")
    assert _digest(build_source_tarball(source, tmp_path / "a.tar.gz")) != before


def test_archive_has_sorted_normalised_entries_without_caches(tmp_path: Path) -> None:
    archive = build_source_tarball(_sources(tmp_path), tmp_path / "a.tar.gz")
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["pkg/data.py", "train.py"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}


def test_real_training_code_packs_train_py_at_the_archive_root(tmp_path: Path) -> None:
    archive = build_source_tarball(REPO_ROOT / "training_code", tmp_path / "sourcedir.tar.gz")
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
    assert "train.py" in names and "requirements.txt" in names
    assert not any("__pycache__" in name for name in names)


def test_lambda_package_is_staged_as_an_importable_lambdas_package(tmp_path: Path) -> None:
    staged = stage_lambda_package(staging_root=tmp_path)
    assert (staged / "lambdas" / "__init__.py").is_file()
    assert (staged / "lambdas" / "handlers" / "plan.py").is_file()
    assert not list(staged.rglob("__pycache__"))


def test_the_lambda_package_is_staged_once_per_content_and_never_rewritten_in_place(tmp_path: Path) -> None:
    # Given a package staged once (as one pytest-xdist worker or a concurrent synth would)
    first = stage_lambda_package(staging_root=tmp_path)
    inode = (first / "lambdas" / "__init__.py").stat().st_ino
    stage_lambda_package.cache_clear()  # another process: nothing cached
    # When it is staged again from the same files
    second = stage_lambda_package(staging_root=tmp_path)
    # Then the same folder is returned untouched (no delete-and-copy that a reader could see half-done)
    assert second == first and (second / "lambdas" / "__init__.py").stat().st_ino == inode
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".lambda-")]
