"""Web pages mount point (filled in by the web shell)."""

from __future__ import annotations

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Attach the staff console pages and static assets."""
