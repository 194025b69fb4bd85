"""POST /v1/jobs/{id}/predict: run a job's trained model (one of its checkpoints) on samples."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Response, status

from api import inference
from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.routes.jobs import get_job_or_404
from api.schemas.predict import PredictOut, PredictRequest
from ingest import arrays
from ingest.errors import IngestError
from store.models import Checkpoint, Job
from store.repositories import checkpoints

router = APIRouter(prefix="/jobs/{job_id}", tags=["predict"])

INPUTS = ["body", "inputs"]


@router.post("/predict", response_model=PredictOut,
             responses={404: {"description": "no such job (or another owner's), or no such checkpoint"},
                        409: {"description": "the job has no checkpoint yet"}})
def predict(job_id: str, body: PredictRequest, session: SessionDep, settings: SettingsDep,
            owner: OwnerDep) -> Response:
    """Each head's outputs for ``inputs`` (at most ``TRAINYARD_MAX_PREDICT_BATCH`` samples of
    the job's input shape), from the ``latest`` checkpoint unless ``checkpoint`` names
    ``best`` or an id; classification heads add softmax ``probabilities`` and arg-max
    ``predictions``. Loaded models stay cached in the API process (LRU by checkpoint id,
    bounded by ``TRAINYARD_MODEL_CACHE_BYTES`` of weights)."""
    job = get_job_or_404(session, job_id, owner)
    plan = job.plan
    if not plan:
        raise HTTPException(status.HTTP_409_CONFLICT, "the job has no plan; resubmit it")
    x = decode_inputs(body.inputs, plan["input_shape"], settings.max_predict_batch)
    ref = _resolve(session, job, body.checkpoint)

    def load() -> inference.LoadedModel:
        ckpt = checkpoints.get_with_data(session, job_id=job.id, checkpoint_id=ref.id)
        if ckpt is None:  # pruned since it was resolved
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"checkpoint {body.checkpoint} not found")
        return inference.load_model(plan, ckpt.data, checkpoint_id=ckpt.id, epoch=ckpt.epoch, step=ckpt.step)

    model = inference.cache.get(ref.id, load, settings.model_cache_bytes)
    session.commit()  # nothing more to read: hand the connection back before the forward
    outputs = model.predict(x)
    answer: dict[str, Any] = {"outputs": {}, "probabilities": {}, "predictions": {},
                              "checkpoint": {"id": model.checkpoint_id, "epoch": model.epoch, "step": model.step}}
    for head, out in outputs.items():
        answer["outputs"][head] = _jsonable(out)
        if model.heads[head] == "classification" and out.ndim >= 2:
            probs = inference.softmax(out)
            answer["probabilities"][head] = _jsonable(probs)
            answer["predictions"][head] = probs.argmax(axis=1).tolist()
    # serialized here once (a returned dict would be validated against PredictOut first)
    return Response(json.dumps(answer, allow_nan=False, separators=(",", ":")), media_type="application/json")


def decode_inputs(value: Any, input_shape: list[int], max_batch: int) -> np.ndarray:
    """``inputs`` as float32 ``[n, *input_shape]``, or a 422 naming ``inputs``."""
    n = _count(value)
    if n is not None and n > max_batch:
        raise FieldError(INPUTS, f"inputs has {n} samples; at most {max_batch} are allowed per request")
    try:
        x = arrays.to_float_array(value)
    except IngestError as exc:
        raise FieldError(INPUTS, f"inputs {exc}") from exc
    if list(x.shape[1:]) != list(input_shape):
        raise FieldError(INPUTS, f"each input must have shape {list(input_shape)}; got {list(x.shape[1:])}")
    return x


def _count(value: Any) -> int | None:
    """Samples ``inputs`` holds, read before decoding it (None: decoding will say what is wrong)."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict) and isinstance(value.get("shape"), list) and value["shape"]:
        first = value["shape"][0]
        return first if isinstance(first, int) and not isinstance(first, bool) else None
    return None


def _resolve(session, job: Job, which: str) -> Checkpoint:
    """The job's checkpoint ``which`` names (its row, file not loaded): 409 if it has none, 404
    for an id it does not have or a ``best`` no checkpoint has a metric for."""
    mode = checkpoints.retention_mode(job.plan)
    for _ in range(3):  # a running job may add (and prune) checkpoints between the two reads
        if which in ("latest", "best"):
            latest, best = checkpoints.marks(session, job_id=job.id, mode=mode)
            if latest is None:
                raise HTTPException(status.HTTP_409_CONFLICT, "the job has no checkpoint yet")
            chosen = latest if which == "latest" else best
            if chosen is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND,
                                    "the job has no best checkpoint: none has a value of its retention metric")
        else:
            chosen = which
        ckpt = next((c for c in checkpoints.for_job(session, job_id=job.id) if c.id == chosen), None)
        if ckpt is not None or which not in ("latest", "best"):
            break
    if ckpt is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"checkpoint {which} not found")
    return ckpt


def _jsonable(a: np.ndarray) -> list[Any]:
    """Nested lists of floats; non-finite values (an overflowing model) become null."""
    if a.dtype.kind != "f" or np.isfinite(a).all():
        return a.tolist()
    return np.where(np.isfinite(a), a.astype(object), None).tolist()
