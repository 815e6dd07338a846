"""The report's tables in a terminal: `lambdas/report/columns.py`'s columns as a rich Table (report.md renders the
same columns as Markdown), so the CLI keeps no copy of any table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.table import Table

from lambdas.report.columns import Column


def terminal_table(title: str, table: Sequence[Column], rows: Iterable[Any]) -> Table:
    """A rich Table with one column per `table` entry (its header and alignment) and one line per row."""
    rendered = Table(title=title)
    for column in table:
        rendered.add_column(column.header, justify=column.align)
    for row in rows:
        rendered.add_row(*(column.cell(row) for column in table))
    return rendered
