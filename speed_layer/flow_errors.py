"""Python tracebacks, with where they happened, for errors inside the Bytewax flow.

An exception raised in a step callback reaches Bytewax's Rust runtime, which panics and
prints a Rust backtrace that hides the Python one. Every callback of the flow (source
partitions, the windows' logic, sink partitions) runs inside ``logged``, which logs the
traceback with the step and its context (partition, offsets) and re-raises: the worker
still stops, but the log says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("speed_layer.flow")


def _describe(context: Callable[[], str]) -> str:
    try:
        return context()
    except Exception as exc:  # noqa: BLE001 - the context must never hide the error
        return f"context unavailable: {exc!r}"


@contextmanager
def logged(step: str, context: Callable[[], str]) -> Iterator[None]:
    """Log an exception escaping the block (not StopIteration, the end of a source)."""
    try:
        yield
    except StopIteration:
        raise
    except Exception:
        log.exception("speed layer step %r failed (%s); the worker stops", step,
                      _describe(context))
        raise
