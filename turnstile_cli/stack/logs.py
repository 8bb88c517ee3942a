"""The last error line of a service's log, for ``stack status`` and the supervisor's records.

Reads only the end of the file: a service's log grows for as long as the stack runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_ERROR = re.compile(r"error|exception|traceback|fatal|critical|panic|killed", re.IGNORECASE)
_NOT_ERROR = re.compile(r"\b(DEBUG|INFO)\b")
_TAIL_BYTES = 64 * 1024
MAX_LINE = 200


def last_error_line(lines: Iterable[str]) -> str | None:
    """The last line that looks like an error (not an INFO/DEBUG record), shortened."""
    found = None
    for line in lines:
        text = line.strip()
        if text and _ERROR.search(text) and not _NOT_ERROR.search(text):
            found = text
    if found is None:
        return None
    return found if len(found) <= MAX_LINE else found[: MAX_LINE - 1] + "…"


def tail_lines(path: Path, max_bytes: int = _TAIL_BYTES) -> list[str]:
    """The lines in the last ``max_bytes`` of ``path`` (none when it does not exist)."""
    try:
        with path.open("rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - max_bytes))
            data = log.read()
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    return lines[1:] if size > max_bytes and lines else lines  # the first may be cut


def last_error_in(path: Path) -> str | None:
    return last_error_line(tail_lines(path))
