"""CSV export of any list or series, safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula
to Excel, LibreOffice and Google Sheets (OWASP "CSV injection"); an endpoint or api_key
like ``=HYPERLINK(...)`` is attacker-chosen text, so such string cells get a leading
apostrophe. Numbers are written as numbers (a negative number is not text).
"""

from __future__ import annotations

import csv as _csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from fastapi import Request
from fastapi.responses import Response

CSV_MEDIA_TYPE: Final = "text/csv; charset=utf-8"
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value: Any) -> str | int | float:
    """One cell: numbers as they are, None empty, text defused if it could be a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def render_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """A header line and one line per row (RFC 4180 quoting, CRLF line ends)."""
    buffer = io.StringIO()
    writer = _csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([safe_cell(c) for c in columns])
    for row in rows:
        writer.writerow([safe_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def wants_csv(request: Request, fmt: str | None) -> bool:
    """``format=csv`` wins; otherwise an Accept header that names text/csv."""
    if fmt is not None:
        return fmt.lower() == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept.lower()


def csv_response(columns: Sequence[str], rows: Iterable[Mapping[str, Any]],
                 filename: str) -> Response:
    return Response(
        render_csv(columns, rows),
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )
