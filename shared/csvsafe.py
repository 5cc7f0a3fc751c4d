"""CSV exports that a spreadsheet cannot be made to execute (OWASP's CSV-injection rule).

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by
Excel, LibreOffice and Google Sheets as a formula (``=HYPERLINK(...)``, ``@SUM(...)``, DDE
payloads). Tenants choose many of the strings we export (product titles, ids, sub ids), so
every cell of every export is neutralised the same way: such a cell gets a single quote
``'`` in front, which spreadsheets show as text and never evaluate. The rule is applied to
every cell, numbers included: a negative amount is exported as ``'-1.50`` (consistent and
safe; a program reading the CSV strips one leading ``'`` before it parses a number). Quoting
of commas, quotes and line breaks is the :mod:`csv` module's.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: the first characters that make a spreadsheet read a cell as a formula (OWASP)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """``value`` as it may stand in a CSV cell: a string that begins like a formula gets a
    ``'`` in front; anything else (None, numbers, other strings) is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        return "'" + str(value)  # the same rule for numbers: they print with a leading '-'
    return value


class SafeCsv:
    """A CSV document whose every cell is neutralised (:func:`neutralise`). Rows are mappings
    (e.g. ``model.model_dump(mode="json")``) over ``fieldnames``. Lines end with ``\\r\\n``
    (RFC 4180), so that a cell holding either character is quoted and reads back whole."""

    def __init__(self, fieldnames: Sequence[str]) -> None:
        self._out = io.StringIO()
        self._writer = csv.DictWriter(self._out, fieldnames=list(fieldnames), lineterminator="\r\n")
        self._writer.writeheader()

    def add(self, row: Mapping[str, Any]) -> None:
        self._writer.writerow({k: neutralise(v) for k, v in row.items()})

    def add_all(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def text(self) -> str:
        return self._out.getvalue()


def csv_text(fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """The whole neutralised CSV of ``rows`` (header first)."""
    doc = SafeCsv(fieldnames)
    doc.add_all(rows)
    return doc.text()
