"""Training memory of a model at a batch size, from its validation report (no build).

What one training step holds at its peak, as the engine trains (checked against tracemalloc
peaks for every zoo model, tests/worker/test_oom_estimate.py):

- per parameter: the weight, its gradient, the optimizer's state slots and two transient
  copies (the gradient's matmul result before it is accumulated, the update's temporaries);
- per sample: every layer's output kept for backward and its gradient, a layer's output at
  1.5x (views such as Flatten or reshape cost nothing); convolutions' unfolded input rows
  (Ho x Wo x Cin x kh x kw); recurrent layers' per-step gates and states; a transformer
  encoder layer's attention matrices and feed-forward activations; and the batch (twice).

The worker caps a training process at this estimate times a margin plus its data
(``worker.resources.cap_bytes``), so an underestimate fails jobs that would fit and an
overestimate lets a job take more than its share: keep it within 1.5x of measured.
"""
from __future__ import annotations

import math
from typing import Any

from engine import spec

BYTES = 4  # float32
OPTIMIZER_SLOTS = {"SGD": 1, "Adam": 2, "AdamW": 2, "RMSprop": 2, "Adagrad": 1, "Adadelta": 2, "Adamax": 2,
                   "NAdam": 2, "RAdam": 2}
VIEWS = {"Flatten", "flatten", "reshape", "getitem", "select", "Unflatten", "view", "squeeze", "unsqueeze",
         "permute", "transpose", "Identity"}
KEPT = 1.5  # a layer's output and its gradient (not every gradient is alive at once)
UNFOLDED = 0.5  # a convolution's unfolded rows: rebuilt in backward, one layer's at a time
RECURRENT = {"LSTM": 8, "GRU": 13}  # per output element and layer: gates and states the fused kernels keep
ATTENTION = 1.8
NORMS = {"BatchNorm1d", "BatchNorm2d"}
NORM_KEPT = 0.25  # the fused training BatchNorm keeps little beyond its input, which backward reads again
BATCH_COPIES = 2  # the batch gathered from the training split, and one transient copy of it


def training_bytes(report: spec.Report, batch_size: int, optimizer: str = "Adam", model: dict | None = None,
                   sample_elements: int = 0) -> int:
    """Peak bytes of a training step of the reported model at ``batch_size`` with ``optimizer``
    (a type name). ``model`` is the spec (for layer arguments the report does not carry);
    ``sample_elements`` the size of one input sample (the batch is gathered into a copy)."""
    slots = OPTIMIZER_SLOTS.get(optimizer, 2)
    per_parameter = 1 + 1 + slots + 2
    kwargs = _nodes(report.expanded or model)
    per_sample = BATCH_COPIES * sample_elements
    for row in report.rows:
        kind, out = row["type"], _elements(row["output_shape"])
        if kind in VIEWS:
            continue
        per_sample += (NORM_KEPT if kind in NORMS else KEPT) * out
        if kind in ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d"):
            channels = _first(row["output_shape"])[1] or 1
            per_sample += UNFOLDED * (out // channels) * (row["parameters"] // channels)
        elif kind in RECURRENT:  # the report's output is the last layer's; every layer keeps its steps
            per_sample += RECURRENT[kind] * out * kwargs.get(row["name"], {}).get("num_layers", 1)
        elif kind in ("TransformerEncoder", "TransformerEncoderLayer"):
            per_sample += ATTENTION * _encoder(kwargs.get(row["name"], {}), out)
    return int(report.parameter_bytes * per_parameter + BYTES * batch_size * per_sample)


def _encoder(node: dict[str, Any], out: int) -> float:
    layer = node.get("encoder_layer", node)
    d, heads, ff = layer.get("d_model", 512), layer.get("nhead", 8), layer.get("dim_feedforward", 2048)
    seq = max(out // max(d, 1), 1)
    return node.get("num_layers", 1) * (seq * (3 * ff + 12 * d) + 3 * heads * seq * seq)


def _nodes(model: dict | None) -> dict[str, dict[str, Any]]:
    """Layer arguments by report row name (a layers spec's index, a graph's node name)."""
    if not model:
        return {}
    if "layers" in model:
        return {str(i): n for i, n in enumerate(model["layers"])}
    if "graph" in model:
        return {n["name"]: n for n in model["graph"].get("nodes", [])}
    return {}


def _first(shape: list) -> list:
    return _first(shape[0]) if shape and isinstance(shape[0], list) else shape


def _elements(shape: list) -> int:
    return math.prod(d for d in _first(shape) if d is not None)
