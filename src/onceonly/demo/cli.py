"""`onceonly demo` (built by the demo package)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the demo command (placeholder until the demo city lands)."""
