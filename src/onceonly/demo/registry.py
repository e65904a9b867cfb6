"""Which function makes the rows of which demo resource."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from onceonly.demo.world import World

Row = dict[str, Any]
Generator = Callable[[World], Iterable[Row]]
GENERATORS: dict[str, Generator] = {}


def rows_for(name: str) -> Callable[[Generator], Generator]:
    def register(func: Generator) -> Generator:
        if name in GENERATORS:
            raise ValueError(f"two generators for resource {name}")
        GENERATORS[name] = func
        return func

    return register
