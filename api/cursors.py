"""Opaque page cursors: the sort they belong to and the last item's (sort value, id)."""
from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from api.errors import FieldError


def encode(sort: str, value: Any, last_id: str) -> str:
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([sort, value, last_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, sort: str) -> tuple[Any, str]:
    """(sort value, id) after which the page starts; a 422 naming ``cursor`` if it is not one
    of ours or belongs to another sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, value, last_id = json.loads(raw)
        if isinstance(value, dict):
            value = datetime.fromisoformat(value["t"])
        if not isinstance(last_id, str) or not (value is None or isinstance(value, (str, int, float, datetime))):
            raise ValueError(cursor)
    except (ValueError, TypeError, KeyError):
        raise FieldError(["query", "cursor"], "is not a cursor this API returned") from None
    if cursor_sort != sort:
        raise FieldError(["query", "cursor"], f"belongs to sort={cursor_sort}; use the same sort to page on")
    return value, last_id
