"""The one error intake raises: what is wrong, and which request field it is about."""
from __future__ import annotations


class IngestError(ValueError):
    """Bad dataset input. ``field`` names the request field when it is not the data itself
    (e.g. ``target_columns`` of a CSV upload); the API turns it into a 422 naming it."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field
