"""The report's tables come from one declarative column table (lambdas/report/columns.py): report.md and the CLI's
terminal tables render the same columns, including what the training code resolved and used."""

from __future__ import annotations

import ast
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console

from finetune import compare
from finetune.tables import terminal_table
from lambdas import report
from lambdas.report import columns
from tests.lambdas.test_lambda_report import ROWS, row

REPO = Path(__file__).resolve().parents[2]
# The report's modules, and the CLI's that render its tables: kept small so they do not grow back into one file.
REPORT_SOURCES = [*sorted((REPO / "lambdas" / "report").glob("*.py")), REPO / "finetune" / "compare.py"]
REPORT_SOURCES += [REPO / "finetune" / "tables.py", REPO / "lambdas" / "handlers" / "report.py"]
MAX_FUNCTION_LINES = 50
MAX_COMPLEXITY = 10


def trained(job: str, learning_rate: Any, batch: Any, seq_len: Any, strategy: str) -> dict[str, Any]:
    """A completed job's ledger row with what Record stores of its resolved hyperparameters (DynamoDB numbers)."""
    resolved = {
        "learning_rate": learning_rate,
        "effective_batch_size": batch,
        "max_seq_length": seq_len,
        "strategy": strategy,
    }
    return {**row(job, "mistral-7b", job, "Completed", 3.0, 0.92), "resolved": resolved}


RESOLVED_ROWS = [
    trained("lora", Decimal("0.000141"), Decimal(16), Decimal(2048), "single"),
    trained("full", Decimal("0.00002"), Decimal(64), Decimal(4096), "fsdp"),
    row("broken", "gpt-neox-20b", "lora", "Failed", 7.0, None),  # never trained: no `resolved`
]


def tables_of(markdown: str) -> list[list[str]]:
    """Each Markdown table of a page as its lines."""
    tables: list[list[str]] = []
    previous = ""
    for line in markdown.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    return tables


def test_report_shows_the_hyperparameters_the_training_code_resolved_and_a_dash_for_a_job_that_never_trained() -> None:
    # Given jobs whose ledger rows carry `resolved` (an auto learning rate, the effective batch, the sequence length,
    # the strategy), and a job that failed before training
    document = report.build_report("run-1", RESOLVED_ROWS)

    # When the report is rendered
    markdown = report.render_markdown(document)

    # Then report.json carries them per job, as plain numbers
    by_job = {job["job_name"]: job["resolved"] for job in document["jobs"]}
    assert by_job["lora"] == {
        "learning_rate": 0.000141,
        "effective_batch_size": 16,
        "max_seq_length": 2048,
        "strategy": "single",
    }
    assert by_job["broken"] == dict.fromkeys(("learning_rate", "effective_batch_size", "max_seq_length", "strategy"))
    # And report.md shows them in the jobs' detail table, right-aligned numbers, "-" where the job never trained
    [details] = [t for t in tables_of(markdown) if "LR used" in t[0]]
    assert details[0].endswith("| LR used | eff. batch | seq len | strategy |")
    assert details[1].endswith("|---:|---:|---:|---|")
    lines = {line.split(" | ")[0]: line for line in details[2:]}
    ranks = {job["job_name"]: job["rank"] for job in document["jobs"]}
    assert lines[f"| {ranks['lora']}"].endswith("| 1.41e-04 | 16 | 2048 | single |")
    assert lines[f"| {ranks['full']}"].endswith("| 2.00e-05 | 64 | 4096 | fsdp |")
    assert lines[f"| {ranks['broken']}"].endswith("| - | - | - | - |")


def test_the_terminal_report_table_renders_the_same_resolved_columns() -> None:
    # Given the report of jobs with resolved hyperparameters
    document = report.build_report("run-1", RESOLVED_ROWS)

    # When `finetune report` renders its terminal table
    console = Console(record=True, width=400, highlight=False)
    console.print(terminal_table("run-1", columns.TERMINAL_JOBS, document["jobs"]))
    text = console.export_text()

    # Then the table has the resolved columns with the same cells as report.md
    assert all(header in text for header in ("LR used", "eff. batch", "seq len", "strategy", "tier", "95% CI"))
    [full] = [line for line in text.splitlines() if " full " in line]
    assert "2.00e-05" in full and "4096" in full and "fsdp" in full


def test_a_report_json_written_before_resolved_values_existed_still_renders() -> None:
    # Given a report.json from S3 whose job entries predate `resolved` (and the newer optional fields)
    document = report.build_report("run-1", ROWS)
    for job in document["jobs"]:
        del job["resolved"], job["estimated_cost_usd"]

    # When the CLI renders it
    console = Console(record=True, width=400, highlight=False)
    console.print(terminal_table("run-1", columns.TERMINAL_JOBS, document["jobs"]))

    # Then each job's line shows "-" for the values it does not have
    [lora] = [line for line in console.export_text().splitlines() if " lora " in line and "mistral" in line]
    assert [cell.strip() for cell in lora.split("│")[-5:-1]] == ["-", "-", "-", "-"]


def test_every_markdown_table_has_as_many_cells_in_each_row_as_in_its_header() -> None:
    # Given a report with every section: attempts, paired answers, estimates by part, earlier runs, resolved values
    rows = [*RESOLVED_ROWS, {**ROWS[2], "estimated_seconds": {"total": 100}, "actual_seconds": {"total": 120}}]
    history = {"mistral-7b#lora": [{**ROWS[1], "run_id": "run-0", "job_name": "old"}]}
    document = report.build_report("run-1", rows, history=history)

    # When it is rendered
    markdown = report.render_markdown(document)

    # Then each table's header, separator and rows agree on the number of cells (they come from one column tuple)
    tables = tables_of(markdown)
    assert len(tables) >= 5
    for table in tables:
        assert len({line.count(" | ") for line in [table[0], *table[2:]]}) == 1, table
        assert table[1].count("|") == table[0].count(" | ") + 2, table


def test_compare_renders_each_runs_figures_from_the_column_table() -> None:
    # Given two runs' rows of the same model x approach
    document = compare.comparison({"run-a": ROWS[:1], "run-b": ROWS[:2]})

    # When rendered as Markdown and as a terminal table
    markdown = compare.render_markdown(document)
    console = Console(record=True, width=400, highlight=False)
    console.print(terminal_table("compare", compare.table(document), document["jobs"]))

    # Then both have a column per run and figure, "-" where a run lacks the pair
    header = "| model | approach | " + " | ".join(
        f"{run} {figure.header}" for run in ("run-a", "run-b") for figure in columns.RUN_FIGURES
    )
    assert markdown.startswith(header + " |\n")
    assert "| mistral-7b | lora | - | - | - | - | - | Completed | 0.920 | 0.990 | 3.00 | 0.0326 |" in markdown
    assert "run-b $/pt" in console.export_text()


def _function_lengths(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text())
    return {
        f"{path.name}:{node.name}": (node.end_lineno or node.lineno) - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_report_functions_stay_short_and_simple() -> None:
    # Given the report's modules and the CLI's table code
    lengths = {name: lines for path in REPORT_SOURCES for name, lines in _function_lengths(path).items()}

    # Then no function is longer than MAX_FUNCTION_LINES lines
    assert {name: lines for name, lines in lengths.items() if lines > MAX_FUNCTION_LINES} == {}
    # And none is more complex than MAX_COMPLEXITY (ruff's McCabe check)
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "C901", "--config",
         f"lint.mccabe.max-complexity={MAX_COMPLEXITY}", *map(str, REPORT_SOURCES)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
