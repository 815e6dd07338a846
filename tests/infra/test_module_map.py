"""The module map in lambdas/__init__.py's docstring matches the code: every handler module is on it, every module it
names exists and is reached from its handler's imports, and every handler the stacks deploy is on it and defines
`handler`. A reader finds a step's code from the map; these tests keep the map from going stale."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import lambdas
from tests.support.synth import SynthesizedApp

LAMBDAS = Path(lambdas.__file__).resolve().parent
HANDLERS = LAMBDAS / "handlers"
# The one handler module no function runs: the Powertools decorators every other handler shares.
NOT_DEPLOYED = {"observability"}

ENTRY = re.compile(
    r"^- (?P<step>\w+)(?: \((?P<trigger>[^)]*)\))?: handlers/(?P<handler>\w+)\.py(?: -> (?P<logic>.+))?$"
)
# `report (ranking, columns, markdown, charts)`: a logic module and, in parentheses, modules of that package.
LOGIC = re.compile(r"(?P<module>\w+)(?: \((?P<submodules>[^)]*)\))?")


@dataclass(frozen=True)
class MapEntry:
    """One line of the map: the step, its handler module, and the logic modules it names."""

    step: str
    handler: str
    logic: tuple[str, ...]
    submodules: tuple[tuple[str, str], ...]  # (package, module) pairs named in parentheses


def module_map() -> list[MapEntry]:
    """The map's entries, parsed from the package docstring (an entry may wrap onto indented lines)."""
    lines: list[str] = []
    for line in (lambdas.__doc__ or "").splitlines():
        if line.startswith("- "):
            lines.append(line)
        elif line.startswith("  ") and lines:
            lines[-1] += " " + line.strip()
    entries = []
    for line in lines:
        match = ENTRY.match(line)
        assert match, f"a map line that does not read `- Step (trigger): handlers/x.py -> logic`: {line!r}"
        logic, submodules = [], []
        for named in LOGIC.finditer(match["logic"] or ""):
            logic.append(named["module"])
            submodules += [(named["module"], sub.strip()) for sub in (named["submodules"] or "").split(",") if sub]
        entries.append(MapEntry(match["step"], match["handler"], tuple(logic), tuple(submodules)))
    return entries


def module_file(module: str) -> Path | None:
    """The file of a `lambdas.…` module (a module file or a package's __init__.py), None when there is none."""
    base = LAMBDAS.parent.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(module: str) -> set[str]:
    """The `lambdas.…` modules `module` imports anywhere in its body (function-level imports included)."""
    path = module_file(module)
    assert path is not None, module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            # `from lambdas import plan` imports the module lambdas.plan; `from lambdas.aws import client` does not.
            found.update(f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}"))
    with_parents = {".".join(name.split(".")[:depth]) for name in found for depth in range(1, name.count(".") + 2)}
    return {name for name in with_parents if name.startswith("lambdas.") and module_file(name)}


def reached_from(module: str) -> set[str]:
    """Every `lambdas.…` module that importing `module` imports, directly or through other lambdas modules."""
    reached, pending = set(), [module]
    while pending:
        for name in imported_modules(pending.pop()) - reached:
            reached.add(name)
            pending.append(name)
    return reached


def defines_handler(path: Path) -> bool:
    """Whether the module at `path` defines a top-level function named `handler` (the Lambda entry point)."""
    return any(
        isinstance(node, ast.FunctionDef) and node.name == "handler" for node in ast.parse(path.read_text()).body
    )


def deployed_handlers(synthesized: SynthesizedApp) -> set[str]:
    """The `lambdas.handlers.<name>.handler` strings of both stacks' functions, as handler module names."""
    handlers: set[str] = set()
    for template in (synthesized.main, synthesized.quotas):
        for function in template.find_resources("AWS::Lambda::Function").values():
            handler = function["Properties"].get("Handler", "")
            # CDK's own functions (custom-resource providers, S3 auto-delete) have handlers of their own.
            if handler.startswith("lambdas."):
                prefix, _, name = handler.removesuffix(".handler").rpartition(".")
                assert prefix == "lambdas.handlers" and handler.endswith(".handler"), handler
                handlers.add(name)
    return handlers


def test_every_handler_module_is_on_the_map_and_the_map_names_no_other() -> None:
    # Given the handler modules in lambdas/handlers
    modules = {path.stem for path in HANDLERS.glob("*.py") if path.stem != "__init__"}
    # When the map is read
    mapped = [entry.handler for entry in module_map()]
    # Then each is on it exactly once, and nothing else is
    assert sorted(mapped) == sorted(modules)


def test_every_logic_module_on_the_map_exists_and_is_reached_from_its_handler() -> None:
    # Given each map entry and what its handler module imports, directly or through other lambdas modules
    for entry in module_map():
        reached = reached_from(f"lambdas.handlers.{entry.handler}")
        # Then each logic module it names exists and the handler really reaches it
        for name in entry.logic:
            assert module_file(f"lambdas.{name}"), f"{entry.step}: lambdas/{name} does not exist"
            assert f"lambdas.{name}" in reached, f"{entry.step}: handlers/{entry.handler}.py never imports {name}"
        # And a module named in parentheses exists once its parent is a package (a plain module has none)
        for package, submodule in entry.submodules:
            if (LAMBDAS / package).is_dir():
                assert module_file(f"lambdas.{package}.{submodule}"), f"lambdas/{package}/{submodule}.py is missing"


def test_every_handler_the_stacks_deploy_exists_defines_handler_and_is_on_the_map(
    synthesized: SynthesizedApp,
) -> None:
    # Given the handler strings of every function the two stacks deploy
    deployed = deployed_handlers(synthesized)
    # Then each names a module of lambdas/handlers that defines `handler`
    for name in deployed:
        path = HANDLERS / f"{name}.py"
        assert path.is_file() and defines_handler(path), f"lambdas.handlers.{name}.handler does not exist"
    # And the deployed handlers are exactly the map's, less the shared decorators' module
    assert deployed == {entry.handler for entry in module_map()} - NOT_DEPLOYED


def test_a_handler_that_imports_nothing_named_on_its_line_is_caught() -> None:
    # Given Launch's handler, which reaches training_job but not the ledger
    reached = reached_from("lambdas.handlers.launch")
    # Then the reach check tells the two apart (the map test above is not vacuous)
    assert "lambdas.training_job" in reached
    assert "lambdas.report" not in reached
