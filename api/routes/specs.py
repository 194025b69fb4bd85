"""POST /v1/specs/validate: check a model spec without submitting a job."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from engine import spec

router = APIRouter(prefix="/specs", tags=["specs"])


class SpecValidateBody(BaseModel):
    model: dict[str, Any]


@router.post("/validate")
def validate_spec(body: SpecValidateBody) -> dict[str, Any]:
    layers = spec.validate(body.model)
    return {
        "valid": True,
        "layers": [{"index": i, "type": cls.__name__, "args": args} for i, (cls, args) in enumerate(layers)],
    }
