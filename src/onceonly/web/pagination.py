"""Page numbers for list pages: which page, how many, and the links between them."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode


def page_number(raw: str | None) -> int:
    """`?page=` as a positive int; anything else is page 1 (a hand-edited URL is no error)."""
    if raw and raw.isdigit() and 0 < len(raw) < 7:
        return max(1, int(raw))
    return 1


@dataclass(frozen=True)
class Pager:
    page: int
    size: int
    total: int
    path: str
    params: tuple[tuple[str, str], ...] = ()

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @property
    def first_item(self) -> int:
        return min(self.total, self.offset + 1)

    @property
    def last_item(self) -> int:
        return min(self.total, self.offset + self.size)

    def url(self, page: int) -> str:
        query = [(k, v) for k, v in self.params if v and k != "page"]
        if page > 1:
            query.append(("page", str(page)))
        return f"{self.path}?{urlencode(query)}" if query else self.path

    def window(self, radius: int = 2) -> list[int | None]:
        """Page numbers to link, with None where a gap (…) goes: 1 … 4 5 [6] 7 8 … 20."""
        keep = {1, self.pages, *range(self.page - radius, self.page + radius + 1)}
        out: list[int | None] = []
        previous = 0
        for n in sorted(p for p in keep if 1 <= p <= self.pages):
            if n - previous > 1:
                out.append(None)
            out.append(n)
            previous = n
        return out
