"""The engine's own forward on a job's downloaded checkpoint: the reference that predict,
evaluate and export answers are compared with."""
from __future__ import annotations

import io

import numpy as np

import engine
from engine import spec


def forward_on_checkpoint(client, job: dict, x: np.ndarray, checkpoint: str = "latest"):
    """Outputs (per head for a multi-head model) of the model built from the job's spec with
    checkpoint ``checkpoint`` (latest, best or an id), in eval mode."""
    r = client.get(f"/v1/jobs/{job['id']}/checkpoints/{checkpoint}/download")
    assert r.status_code == 200
    plan = job["plan"]
    model = spec.build_model(job["model"], plan["input_shape"], num_classes=plan["num_outputs"])
    model.load_state_dict(engine.load(io.BytesIO(r.content)))
    model.eval()
    with engine.no_grad():
        out = model(engine.tensor(x, dtype=engine.float32))
    return {k: v.numpy() for k, v in out.items()} if isinstance(out, dict) else out.numpy()
