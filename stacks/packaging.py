"""Build-time packaging of the two code bundles the app deploys, both deterministic.

- The training code goes to SageMaker as `sagemaker_submit_directory`, which must be a tar.gz (not the zip CDK
  makes of a directory). Entries are sorted and normalised (mtime, owner, mode) and gzip carries no timestamp,
  so the same sources always give the same bytes and hence the same asset hash: no redeploy without a change.
- The Lambda package is `lambdas/` staged under a folder so that the runtime imports it as the package
  `lambdas`, exactly as the stacks, CLI and tests do, next to the runtime libraries it was tested with
  (`LAMBDA_BUNDLE`: Powertools and the AWS SDK), copied from this environment's installed distributions.
  Bundled, they come first on the Lambda runtime's path (`/var/task`), ahead of the SDK the runtime ships; no
  public layer is needed. Copying happens only if each installed version is the one `requirements.txt` pins, so
  what deploys is what the tests imported (docs/runtime.md).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import io
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name

from finetune.dlc_requirements import pinned_requirements

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build"
_EXCLUDED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache", "tests"}
_EXCLUDED_SUFFIXES = {".pyc", ".pyo"}
# The pins of everything the Lambda asset bundles (and of the CDK app).
RUNTIME_REQUIREMENTS = REPO_ROOT / "requirements.txt"
# What the Lambdas import and what that needs (every non-optional requirement of these distributions; a test checks
# that the set is closed), bundled into the asset at the versions `RUNTIME_REQUIREMENTS` pins. The python3.14
# runtime's own boto3 is older than the botocore the code is tested with, and the public Powertools layer is a
# number that says nothing of its version (`:27` is 3.23.0, without `EphemeralMetrics.add_dimensions`).
LAMBDA_BUNDLE = (
    "aws-lambda-powertools",
    "jmespath",
    "typing-extensions",
    # Powertools' Tracer (the `tracer` extra) and its wrapper library.
    "aws-xray-sdk",
    "wrapt",
    # The JSON Schema validation of Plan's input (lambdas/schema).
    "fastjsonschema",
    "boto3",
    "botocore",
    "s3transfer",
    "python-dateutil",
    "six",
    "urllib3",
)
# Distributions whose compiled modules are optional: wrapt falls back to its pure-Python wrappers when its C extension
# does not import (wrapt/__wrapt__.py), and the extension built here (CPython 3.11) is not one python3.14 can load.
# Any other compiled file in the bundle is refused: it could not run in the Lambda runtime.
_PURE_PYTHON_FALLBACK = {"wrapt"}
_COMPILED_SUFFIXES = {".so", ".pyd"}


class BundleMismatch(Exception):
    """The environment that synthesizes the app does not hold the pinned Lambda runtime libraries (or holds a build
    the Lambda runtime cannot load): the asset would not be what the tests ran."""


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


def bundle_files(
    names: tuple[str, ...] = LAMBDA_BUNDLE, requirements: Path = RUNTIME_REQUIREMENTS
) -> dict[PurePosixPath, Path]:
    """The files of the installed distributions `names` (their packages and `.dist-info`, as their RECORD lists them,
    without caches, scripts outside site-packages and optional compiled modules), by path inside the asset.

    Raises BundleMismatch when a distribution is missing, is not pinned in `requirements`, is installed at another
    version than its pin, or carries a compiled module without a pure-Python fallback."""
    pins = pinned_requirements(requirements)
    files: dict[PurePosixPath, Path] = {}
    for name in names:
        key = canonicalize_name(name)
        if key not in pins:
            raise BundleMismatch(f"{name} is bundled into the Lambda asset but not pinned in {requirements.name}")
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise BundleMismatch(f"{name}=={pins[key]} is not installed: pip install -r {requirements.name}") from None
        if distribution.version != pins[key]:
            raise BundleMismatch(
                f"{name} {distribution.version} is installed but {requirements.name} pins {pins[key]}: the Lambda "
                f"asset must ship the tested version (pip install -r {requirements.name})"
            )
        for record in distribution.files or ():
            relative = PurePosixPath(record.as_posix())
            if relative.parts[0] == ".." or "__pycache__" in relative.parts or relative.suffix in _EXCLUDED_SUFFIXES:
                continue
            if relative.suffix in _COMPILED_SUFFIXES:
                if key in _PURE_PYTHON_FALLBACK:
                    continue
                raise BundleMismatch(f"{name} ships a compiled module ({relative}) the Lambda runtime cannot load")
            files[relative] = Path(str(distribution.locate_file(record)))
    return files


@functools.cache
def stage_lambda_package(source_dir: Path = REPO_ROOT / "lambdas", staging_root: Path = BUILD_DIR) -> Path:
    """Stage the Lambda asset under `staging_root` and return its folder: `lambdas/` (without caches/tests) as the
    package `lambdas`, beside the pinned runtime libraries (`bundle_files`). Staged once per process: every function
    of the app shares the one asset.

    The folder is named after a digest of what it holds and filled under a private name first, then renamed into
    place: processes that synthesize at once (pytest-xdist workers, a synth beside a test run) never delete or
    half-write a folder another one is reading, and the same content is staged once."""
    targets = {
        PurePosixPath(source_dir.name, *path.relative_to(source_dir).parts): path
        for path in _packaged_files(source_dir)
    }
    targets.update(bundle_files())
    digest = hashlib.sha256()
    for relative, path in sorted(targets.items()):
        digest.update(f"{relative}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    staged = staging_root / f"lambda-{digest.hexdigest()[:16]}"
    if staged.is_dir():
        return staged
    staging_root.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=".lambda-", dir=staging_root))
    for relative, path in sorted(targets.items()):
        target = private / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    try:
        private.rename(staged)
    except OSError:  # another process staged the same content first: use theirs
        shutil.rmtree(private, ignore_errors=True)
    return staged
