"""The error every spec problem raises: where (a JSON path) and what, in words."""
from __future__ import annotations


class SpecError(ValueError):
    """A model spec is invalid. ``path`` locates the offending field inside the spec,
    e.g. ``("layers", 3, "type")``; ``pointer`` is the same as a JSON pointer."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path
        self.message = message

    @property
    def pointer(self) -> str:
        return "".join(f"/{p}" for p in self.path)

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"
