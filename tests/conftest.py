"""Session-wide test wiring; kept light so unit tests start instantly.

Marks every test by the folder it lives in (``tests/unit`` → ``unit``,
``tests/integration`` → ``integration``), so ``pytest -m unit`` needs no servers.
The servers themselves are started by ``tests/integration/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
_MARK_BY_FOLDER = {"unit": pytest.mark.unit, "integration": pytest.mark.integration}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        mark = _MARK_BY_FOLDER.get(folder)
        if mark is not None:
            item.add_marker(mark)
