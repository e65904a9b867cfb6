"""Uploaded files: kept on disk (never in memory) in a scratch folder under the home, loaded
as a batch in the background, then removed. Shared by the API and the web upload page."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from onceonly.accounts.actor import Actor
from onceonly.db import Database
from onceonly.errors import PlatformError
from onceonly.ingest import service
from onceonly.ingest.schemas import IngestOptions

log = logging.getLogger("onceonly.ingest")
UPLOAD_CHUNK = 1 << 20
MAX_NAME_BYTES = 200  # under every file system's 255-byte limit, and the batch's file_name column


def safe_file_name(raw: str | None) -> str:
    """The client's file name reduced to one harmless path component: the last part after any
    slash or backslash (browsers may send C:\\...\\x.csv), no control characters, never `.` or
    `..`, at most MAX_NAME_BYTES bytes with the suffix (which picks the reader) kept."""
    name = (raw or "").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if not name.strip("."):
        return "upload"
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, suffix = os.path.splitext(name)
        suffix = suffix if len(suffix.encode()) <= 16 else ""
        stem = stem.encode()[: MAX_NAME_BYTES - len(suffix.encode())].decode("utf-8", "ignore")
        name = stem + suffix
    return name


def save_upload(db: Database, name: str, stream: BinaryIO) -> Path:
    """Copy the upload to a fresh scratch folder; the caller removes it with `discard`."""
    root = db.settings.home / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=root))
    path = folder / safe_file_name(name)
    try:
        with path.open("wb") as out:
            shutil.copyfileobj(stream, out, UPLOAD_CHUNK)
    except BaseException:
        discard(path)
        raise
    return path


def discard(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)


def run_saved(db: Database, actor: Actor, batch_id: int, path: Path, options: IngestOptions,
              max_delete_share: float) -> None:
    """Background work: the outcome — committed, or failed with its reason — is in the batch
    record, which is what the API and the batch page show; the upload is then removed."""
    try:
        service.ingest_file(db, actor, 0, path, options, batch_id=batch_id, max_delete_share=max_delete_share)
    except PlatformError:
        pass
    except Exception:
        log.exception("batch %s failed unexpectedly", batch_id)
    finally:
        discard(path)
