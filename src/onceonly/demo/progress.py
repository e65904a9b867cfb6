"""Progress of a demo build: one bar per stage on the console, or nothing (tests, library use)."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class Stages(Protocol):
    def start(self, title: str, total: int) -> None: ...
    def advance(self, amount: int = 1, note: str | None = None) -> None: ...


class Quiet:
    def start(self, title: str, total: int) -> None:
        pass

    def advance(self, amount: int = 1, note: str | None = None) -> None:
        pass


class RichStages:
    """A bar per stage; each stage's bar stays on screen, filled, when the next one starts."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.fields[title]:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[note]}"), console=console, transient=False,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> RichStages:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self._close()
        self.progress.stop()

    def _close(self) -> None:
        if self.task is not None:
            task = self.progress.tasks[-1]
            self.progress.update(self.task, completed=task.total, note="")

    def start(self, title: str, total: int) -> None:
        self._close()
        self.task = self.progress.add_task(title, total=max(total, 1), title=title, note="")

    def advance(self, amount: int = 1, note: str | None = None) -> None:
        if self.task is not None:
            if note is None:
                self.progress.advance(self.task, amount)
            else:
                self.progress.update(self.task, advance=amount, note=note)
