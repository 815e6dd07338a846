"""The Lambdas run the Powertools and AWS SDK they were tested with: both travel in the function's own asset, copied
from this environment at the versions requirements.txt pins, never from a public layer whose number says nothing
of its version (`:27` was Powertools 3.23.0, which lacks `EphemeralMetrics.add_dimensions`)."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from finetune.dlc_requirements import pinned_requirements
from stacks.packaging import (
    LAMBDA_BUNDLE,
    REPO_ROOT,
    RUNTIME_REQUIREMENTS,
    BundleMismatch,
    bundle_files,
    stage_lambda_package,
)

# The Lambda runtime the functions run on (stacks/constructs/hardened.py), for evaluating requirement markers.
LAMBDA_PYTHON = "3.14"
# What the handlers reach through Powertools' optional extras: the Tracer (observability.py) and nothing else.
USED_EXTRAS = {"aws-lambda-powertools": {"tracer"}}


def _our_functions(template: dict) -> dict[str, dict]:
    functions = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}
    return {k: v for k, v in functions.items() if v["Properties"].get("Handler", "").startswith("lambdas.")}


def _staged_versions(staged: Path) -> dict[str, str]:
    """Versions of the distributions in the staged asset, read from the `.dist-info` folders it carries."""
    return {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions(path=[str(staged)])
    }


def test_lambdas_run_the_pinned_powertools_and_sdk_from_their_asset_not_a_layer(synthesized) -> None:
    from aws_cdk import FileSystem

    # Given the synthesized app and the asset staged for it
    staged = stage_lambda_package()
    functions = _our_functions(synthesized.main_json)
    # Then no function takes a layer (whose number would decide the Powertools version) ...
    assert {name: fn["Properties"].get("Layers") for name, fn in functions.items()} == dict.fromkeys(functions)
    # ... every function deploys the staged asset (CDK names the asset by the fingerprint of the staged folder) ...
    assert {fn["Properties"]["Code"]["S3Key"] for fn in functions.values()} == {
        f"{FileSystem.fingerprint(str(staged))}.zip"
    }
    # ... and that asset carries Powertools, boto3 and botocore at exactly the pinned versions
    pins = pinned_requirements(RUNTIME_REQUIREMENTS)
    staged_versions = _staged_versions(staged)
    for name in ("aws-lambda-powertools", "boto3", "botocore"):
        assert staged_versions[name] == pins[name], name
    assert staged_versions == {canonicalize_name(name): pins[canonicalize_name(name)] for name in LAMBDA_BUNDLE}


def test_the_bundle_holds_everything_the_bundled_libraries_require() -> None:
    # Given the bundled distributions, When their requirements on python3.14 are read (the extras the handlers use
    # included), Then each is bundled too: nothing is left to whatever the runtime happens to ship
    bundled = {canonicalize_name(name) for name in LAMBDA_BUNDLE}
    missing = {}
    for name in LAMBDA_BUNDLE:
        for text in importlib.metadata.requires(name) or ():
            requirement = Requirement(text)
            extras = USED_EXTRAS.get(name, set()) | {""}
            environment = {"python_version": LAMBDA_PYTHON, "python_full_version": f"{LAMBDA_PYTHON}.0"}
            if requirement.marker and not any(
                requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras
            ):
                continue
            if canonicalize_name(requirement.name) not in bundled:
                missing[requirement.name] = name
    assert missing == {}


def _third_party_imports(package: Path) -> set[str]:
    modules = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in {"lambdas", "__future__"}}


def test_every_library_the_lambdas_import_is_bundled() -> None:
    # Given every top-level import of lambdas/ outside the standard library and the package itself
    imports = _third_party_imports(REPO_ROOT / "lambdas")
    # When mapped to the distributions that provide them, Then each is in the bundle
    providers = importlib.metadata.packages_distributions()
    bundled = {canonicalize_name(name) for name in LAMBDA_BUNDLE}
    assert {
        m: providers.get(m) for m in imports if not bundled & {canonicalize_name(d) for d in providers.get(m, [])}
    } == {}


def test_the_staged_asset_imports_every_handler_on_its_own() -> None:
    # Given the staged asset and an interpreter that sees only it and the standard library (-S: no site-packages)
    staged = stage_lambda_package()
    handlers = sorted(p.stem for p in (REPO_ROOT / "lambdas" / "handlers").glob("*.py") if p.stem != "__init__")
    script = (
        "import sys, json, importlib\n"
        f"sys.path.insert(0, {str(staged)!r})\n"
        f"for name in {handlers!r}:\n"
        "    importlib.import_module('lambdas.handlers.' + name)\n"
        "import aws_lambda_powertools, boto3, botocore, wrapt\n"
        "from aws_lambda_powertools.shared.version import VERSION\n"
        "print(json.dumps({'powertools': VERSION, 'boto3': boto3.__version__, 'botocore': botocore.__version__,"
        " 'files': [m.__file__ for m in (aws_lambda_powertools, boto3, botocore, wrapt)]}))\n"
    )
    environment = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}
    # When every handler module is imported from it
    done = subprocess.run(
        [sys.executable, "-S", "-c", script], capture_output=True, text=True, env=environment, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    # Then the libraries come from the asset, at the pinned versions (wrapt on its pure-Python path: no .so shipped)
    pins = pinned_requirements(RUNTIME_REQUIREMENTS)
    assert (loaded["powertools"], loaded["boto3"], loaded["botocore"]) == (
        pins["aws-lambda-powertools"],
        pins["boto3"],
        pins["botocore"],
    )
    assert all(path.startswith(str(staged)) for path in loaded["files"])
    assert not [p for p in staged.rglob("*") if p.suffix in {".so", ".pyd"}]


def test_synth_refuses_an_environment_whose_runtime_library_is_not_the_pin(tmp_path: Path) -> None:
    # Given requirements that pin another botocore than the one installed
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("botocore==1.0.0\n")
    # When the bundle is collected, Then it is refused, naming the installed version, the pin and the fix
    with pytest.raises(BundleMismatch, match=r"botocore 1\.44\.8 is installed but requirements\.txt pins 1\.0\.0"):
        bundle_files(("botocore",), requirements)


def test_a_bundled_library_that_is_not_pinned_is_refused(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("boto3==1.44.8\n")
    with pytest.raises(BundleMismatch, match="botocore is bundled into the Lambda asset but not pinned"):
        bundle_files(("botocore",), requirements)


def test_a_compiled_module_without_a_pure_python_fallback_is_refused(tmp_path: Path) -> None:
    # Given a distribution built for this interpreter only (pydantic-core: a CPython 3.11 extension module)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"pydantic-core=={importlib.metadata.version('pydantic-core')}\n")
    # When bundled, Then it is refused: python3.14 could not load it
    with pytest.raises(BundleMismatch, match="compiled module"):
        bundle_files(("pydantic-core",), requirements)
