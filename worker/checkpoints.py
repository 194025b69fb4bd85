"""Checkpoint contents: the downloadable model file and the state exact resume needs."""
from __future__ import annotations

import io
import json
from typing import Any

import engine
from engine import nn, optim

FORMAT = "trainyard.checkpoint.v1"


def model_file(model: nn.Module, *, job_id: str, model_spec: dict, epoch: int, step: int) -> bytes:
    """The model's state_dict as safetensors, keys verbatim, spec/epoch/step in the header."""
    buf = io.BytesIO()
    metadata = {"format": FORMAT, "job_id": job_id, "spec": json.dumps(model_spec),
                "epoch": str(epoch), "step": str(step)}
    engine.save(model.state_dict(), buf, metadata=metadata)
    return buf.getvalue()


def state_file(optimizer: optim.Optimizer, position: dict[str, Any]) -> bytes:
    """Optimizer state, the engine's RNG state and the loop position (safetensors + JSON)."""
    buf = io.BytesIO()
    engine.save({"optimizer": optimizer.state_dict(), "rng": engine.get_rng_state(), "position": position}, buf)
    return buf.getvalue()


def restore(model: nn.Module, optimizer: optim.Optimizer, model_bytes: bytes, state_bytes: bytes) -> dict[str, Any]:
    """Load a checkpoint into ``model`` and ``optimizer``, reseed the engine; returns the position."""
    model.load_state_dict(engine.load(io.BytesIO(model_bytes)))
    state = engine.load(io.BytesIO(state_bytes))
    optimizer.load_state_dict(state["optimizer"])
    engine.set_rng_state(state["rng"])
    return dict(state["position"])


class CheckpointNotStored(Exception):
    """A checkpoint the store refused for a reason every attempt would meet again (a value
    too large, a corrupt or missing blob, a full, read-only or misconfigured blob volume): the
    job fails with it instead of going back to the queue as an infrastructure failure
    (``worker.failures`` class ``user``)."""


_TOO_BIG = ("too large", "too big", "too long", "memory alloc", "out of memory", "exceeds")


def deterministic(exc: BaseException) -> bool:
    """Would writing the same checkpoint fail again, whichever worker tried?"""
    import errno

    from sqlalchemy.exc import DataError, IntegrityError, InternalError, OperationalError, ProgrammingError

    from store.blobs import BlobError

    if isinstance(exc, (BlobError, ValueError, OverflowError, DataError, IntegrityError, InternalError,
                        ProgrammingError)):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                                  errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG):
        return True  # the blob volume is full, read-only or not a directory: so it is for every attempt
    return isinstance(exc, OperationalError) and any(s in str(exc.orig).lower() for s in _TOO_BIG)


def write_failure(exc: BaseException, *, model_bytes: int, state_bytes: int) -> BaseException:
    """What a failed checkpoint write raises: CheckpointNotStored naming the reason and the
    sizes when the failure is deterministic, else the error itself (retried as infrastructure)."""
    if not deterministic(exc):
        return exc
    return CheckpointNotStored(f"the checkpoint ({model_bytes} bytes of weights, {state_bytes} bytes of resume "
                               f"state) could not be stored: {type(exc).__name__}: {str(exc)[:500]}")
