"""GET /v1/specs/zoo: the built-in architectures a ``{"zoo": name, "args": {...}}`` spec may
name, each with its arguments, their types and defaults (the new-job form offers them)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from engine.spec import DEFAULT_LOSS, ZOO

router = APIRouter(prefix="/specs", tags=["specs"])


class ZooArg(BaseModel):
    name: str
    type: str  # int, float, bool, str or list (of layer widths)
    default: Any = None  # None: derived from the dataset (num_classes) or the model's own choice


class ZooModel(BaseModel):
    name: str
    args: list[ZooArg]
    loss: str | None = None  # the loss it trains with when the task default does not fit


class ZooList(BaseModel):
    items: list[ZooModel]


@router.get("/zoo", response_model=ZooList)
def list_zoo() -> ZooList:
    """Every zoo model with its arguments; ``num_classes`` defaults to the dataset's."""
    items = []
    for name, (_, accepted) in ZOO.items():
        args = [ZooArg(name=k, type=t.__name__, default=d) for k, (t, d) in accepted.items()]
        args.append(ZooArg(name="num_classes", type="int", default=None))
        items.append(ZooModel(name=name, args=args, loss=DEFAULT_LOSS.get(name)))
    return ZooList(items=items)
