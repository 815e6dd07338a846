"""Build-time packaging of the two code bundles the app deploys, both deterministic.

- The training code goes to SageMaker as `sagemaker_submit_directory`, which must be a tar.gz (not the zip CDK
  makes of a directory). Entries are sorted and normalised (mtime, owner, mode) and gzip carries no timestamp,
  so the same sources always give the same bytes and hence the same asset hash: no redeploy without a change.
- The Lambda package is `lambdas/` staged under a folder so that the runtime imports it as the package
  `lambdas`, exactly as the stacks, CLI and tests do.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build"
_EXCLUDED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache", "tests"}
_EXCLUDED_SUFFIXES = {".pyc", ".pyo"}


def _packaged_files(source_dir: Path) -> list[Path]:
    files = []
    for path in source_dir.rglob("*"):
        relative = path.relative_to(source_dir)
        if path.is_file() and not (_EXCLUDED_PARTS & set(relative.parts)) and path.suffix not in _EXCLUDED_SUFFIXES:
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(source_dir).as_posix())


def build_source_tarball(source_dir: Path, output_path: Path) -> Path:
    """Write `source_dir` as a byte-for-byte reproducible tar.gz at `output_path` and return that path."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in _packaged_files(source_dir):
            info = tarfile.TarInfo(path.relative_to(source_dir).as_posix())
            data = path.read_bytes()
            info.size = len(data)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            archive.addfile(info, io.BytesIO(data))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    compressed = io.BytesIO()
    # mtime=0 and no filename keep the gzip header identical between builds.
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=9) as gz:
        gz.write(buffer.getvalue())
    new_bytes = compressed.getvalue()
    if not output_path.exists() or output_path.read_bytes() != new_bytes:
        output_path.write_bytes(new_bytes)
    return output_path


def stage_lambda_package(source_dir: Path = REPO_ROOT / "lambdas", staging_dir: Path = BUILD_DIR / "lambda") -> Path:
    """Copy `lambdas/` to `<staging_dir>/lambdas/` (without caches/tests) and return `staging_dir`."""
    package_dir = staging_dir / source_dir.name
    if package_dir.exists():
        shutil.rmtree(package_dir)
    for path in _packaged_files(source_dir):
        target = package_dir / path.relative_to(source_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return staging_dir
