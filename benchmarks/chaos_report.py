"""The chaos run's figures per fault, and its markdown table."""

from __future__ import annotations

from typing import Any


def lost(row: dict[str, Any]) -> int | None:
    if row.get("billing_lost") is None:
        return None
    return int(row["billing_lost"] + row["stream_lost"] + row.get("late_events_lost", 0)
               + row.get("rerun_billing_lost", 0))


def double(row: dict[str, Any]) -> int | None:
    if row.get("billing_double") is None:
        return None
    return int(row["billing_double"] + row["stream_double"] + row.get("late_events_double", 0)
               + row.get("rerun_billing_double", 0))


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| fault | recover s | events | delayed | lost (bill/stream) | double (bill/stream)"
            " | alerts twice | manual steps | notes |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        rec = "not recovered" if r.get("recover_s") is None else f"{r['recover_s']:.1f}"
        notes = "; ".join(r.get("notes") or [])[:160] or "-"
        lines.append(
            f"| {r['fault']} | {rec} | {r.get('events', '-')} | {r.get('events_delayed', '-')}"
            f" | {r.get('billing_lost', '-')}/{r.get('stream_lost', '-')}"
            f" | {r.get('billing_double', '-')}/{r.get('stream_double', '-')}"
            f" | {r.get('alerts_sent_twice', '-')} | {r.get('manual_steps', '-')} | {notes} |")
    return "\n".join(lines)
