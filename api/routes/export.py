"""GET /v1/jobs/{id}/export: a trained model as a file another runtime loads (ONNX), or the
checkpoint's weights as they are (safetensors)."""
from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

import engine
from api.auth import OwnerDep
from api.deps import SessionDep
from api.errors import FieldError
from api.routes.jobs import get_job_or_404
from engine import spec
from export import ExportError, to_bytes
from store.models import Job
from store.repositories import checkpoints

router = APIRouter(prefix="/jobs/{job_id}", tags=["results"])

FORMATS = ("onnx", "safetensors")


class ExportQuery(BaseModel):
    """What GET /v1/jobs/{id}/export takes; any other query parameter is a 422."""

    model_config = ConfigDict(extra="forbid")

    format: str = Field("onnx", description="onnx (the model, opset 17, dynamic batch) or safetensors (the weights)")
    checkpoint: str = Field("latest", max_length=64, description="latest, best (by the retention metric) or an id")


def _checkpoint(session, job: Job, which: str):
    """The checkpoint ``which`` names, its file loaded; 404 when there is none (409 while the
    job is still queued without any)."""
    ckpt = checkpoints.named(session, job_id=job.id, which=which, mode=checkpoints.retention_mode(job.plan))
    if ckpt is not None:
        return ckpt
    if which in ("latest", "best") and not checkpoints.for_job(session, job_id=job.id):
        if job.status == "queued":
            raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is queued and has no checkpoint yet; "
                                                          "export it once it has trained")
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job.id} has no checkpoint")
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"checkpoint {which} not found")


def _onnx_file(job: Job, data: bytes) -> bytes:
    """The job's model with the checkpoint's weights, as an ONNX file (or the 422 naming the
    layer ONNX cannot express)."""
    plan = job.plan or {}
    if "input_shape" not in plan:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} has no plan to build its model from")
    model = spec.build_model(job.model_spec, plan["input_shape"], num_classes=plan.get("num_outputs"))
    model.load_state_dict(engine.load(io.BytesIO(data)))
    try:
        return to_bytes(model, tuple(plan["input_shape"]), graph_name=f"trainyard-job-{job.id}")
    except ExportError as exc:
        raise FieldError(["query", "format"], f"{exc}; format=safetensors gives the weights") from exc


@router.get(
    "/export",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def export_model(job_id: str, session: SessionDep, owner: OwnerDep,
                 query: Annotated[ExportQuery, Query()]) -> Response:
    """The job's model at a checkpoint: ``format=onnx`` an ONNX model (input ``input``, or the
    graph's input names, with a dynamic batch; output ``output``, or one per head), ``format=
    safetensors`` the checkpoint file as /checkpoints/{id}/download gives it."""
    job = get_job_or_404(session, job_id, owner)
    if query.format not in FORMATS:
        raise FieldError(["query", "format"], f"unknown export format {query.format[:40]!r}; "
                                              f"known: {', '.join(FORMATS)}")
    ckpt = _checkpoint(session, job, query.checkpoint)
    if query.format == "safetensors":
        content, suffix = ckpt.data, "safetensors"
    else:
        content, suffix = _onnx_file(job, ckpt.data), "onnx"
    filename = f"job-{job_id}-epoch-{ckpt.epoch}.{suffix}"
    return Response(content=content, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "X-Checkpoint-Id": ckpt.id})
