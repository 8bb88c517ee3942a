"""Where the deploy/ files live and how their templates are filled in.

Templates use ``@NAME@`` placeholders rather than ``${...}`` because log4j2 configs use
``${sys:...}`` lookups of their own; an unknown or leftover placeholder is an error, so a
renamed setting cannot silently produce a broken config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"

_PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")


def render_template(template: Path, values: Mapping[str, object]) -> str:
    """Fill ``@NAME@`` placeholders of ``template``; every placeholder must have a value."""
    text = template.read_text(encoding="utf-8")
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - set(values))
    if missing:
        raise KeyError(f"{template}: no value for placeholder(s) {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (keeps mtimes meaningful)."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.write_text(text, encoding="utf-8")
