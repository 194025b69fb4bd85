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
