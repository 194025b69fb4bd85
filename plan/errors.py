"""The planner's error: a request field that is valid alone but wrong in context."""
from __future__ import annotations

from typing import Any


class PlanError(ValueError):
    """``loc`` is the field's location in the request (``["body", "training", "epochs"]``)."""

    def __init__(self, loc: list[Any], message: str):
        super().__init__(message)
        self.loc, self.message = loc, message
