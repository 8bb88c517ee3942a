"""How every ``turnstile`` command prints: never cut when piped, JSON on request.

Rich sizes its output to the terminal, and to 80 columns when stdout is a pipe or a file,
where it would cut table cells with "…" (a key id that ``keys revoke`` needs, a URL) and
fold long lines. A pipe has no width, so there the console is as wide as the output.
"""

from __future__ import annotations

import json
from typing import Any, Final

import typer
from rich.console import Console

PIPE_WIDTH: Final = 10_000  # wider than any line we print: nothing is cut or folded


def console(*, stderr: bool = False) -> Console:
    """A console of the terminal's width, or of unbounded width when not a terminal."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, width=PIPE_WIDTH)


def print_json(payload: Any) -> None:
    """``payload`` as one JSON document on stdout (dates and other values as strings)."""
    typer.echo(json.dumps(payload, indent=2, default=str))


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one ``error: …`` line on stderr; raise the returned Exit with ``raise``."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
