"""Search filters (year range, category, author) shared by the CLI, retrieval and the UI."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .corpus import Paper


class Filters(BaseModel):
    year_from: int | None = Field(None, description="Earliest year, inclusive.")
    year_to: int | None = Field(None, description="Latest year, inclusive.")
    category: str | None = Field(None, description="Category code such as CV (matches cs.CV too).")
    author: str | None = Field(None, description="Case-insensitive substring of an author's name.")

    def is_empty(self) -> bool:
        return not (self.year_from or self.year_to or self.category or self.author)

    def validate(self) -> None:
        """Raise ValueError with a readable message for impossible combinations."""
        if self.year_from and self.year_to and self.year_from > self.year_to:
            raise ValueError(f"year range {self.year_from}–{self.year_to} is empty: the start is after the end")
        for y in (self.year_from, self.year_to):
            if y is not None and not 1900 <= y <= 2100:
                raise ValueError(f"year {y} is out of range (1900–2100)")
        if self.author is not None and not self.author.strip():
            raise ValueError("author filter is empty")

    def describe(self) -> str:
        parts = []
        if self.year_from or self.year_to:
            if self.year_from == self.year_to:
                parts.append(f"year {self.year_from}")
            else:
                parts.append(f"years {self.year_from or '…'}–{self.year_to or '…'}")
        if self.category:
            parts.append(f"category {self.category}")
        if self.author:
            parts.append(f"author ~ {self.author}")
        return ", ".join(parts) or "none"

    def _category_ok(self, category: str | None) -> bool:
        if not self.category:
            return True
        want = self.category.casefold()
        have = (category or "").casefold()
        return have == want or have.split(".")[-1] == want.split(".")[-1]

    def matches(self, paper: Paper) -> bool:
        if (self.year_from or self.year_to) and paper.year is None:
            return False
        if self.year_from and paper.year < self.year_from:
            return False
        if self.year_to and paper.year > self.year_to:
            return False
        if not self._category_ok(paper.category):
            return False
        return not (self.author and not any(self.author.casefold() in a.casefold() for a in paper.authors))

    def chroma_where(self, papers: list[Paper]) -> dict | None:
        """A Chroma `where` clause. Author substrings are resolved to paper ids (Chroma has no substring match
        on metadata), categories to the exact stored codes, so the store applies every filter in its query."""
        clauses: list[dict] = []
        if self.year_from:
            clauses.append({"year": {"$gte": self.year_from}})
        if self.year_to:
            clauses.append({"year": {"$lte": self.year_to}})
            if not self.year_from:
                clauses.append({"year": {"$gt": 0}})  # 0 = unknown year
        if self.category:
            codes = sorted({p.category for p in papers if p.category and self._category_ok(p.category)})
            clauses.append({"category": {"$in": codes or [self.category]}})
        if self.author:
            ids = sorted(p.id for p in papers if self.matches_author(p))
            clauses.append({"paper_id": {"$in": ids or ["<none>"]}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def matches_author(self, paper: Paper) -> bool:
        return bool(self.author) and any(self.author.casefold() in a.casefold() for a in paper.authors)
