"""Target heads: the default head's name, the facts kept per head and per dataset."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_HEAD = "output"


def as_heads(targets: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One target array is the single head ``DEFAULT_HEAD``; a dict already names its heads."""
    return targets if isinstance(targets, dict) else {DEFAULT_HEAD: targets}


def head_info(task: str, y: np.ndarray) -> dict[str, Any]:
    """What the planner needs of a head without loading the data: task, shape, dtype, classes."""
    info: dict[str, Any] = {"task": task, "shape": list(y.shape[1:]), "dtype": str(y.dtype), "num_classes": None}
    if task == "classification" and y.size:
        info["num_classes"] = int(y.max()) + 1
    return info


@dataclass(frozen=True)
class DatasetFacts:
    """What is known of a stored dataset without loading its arrays."""

    input_shape: list[int]
    heads: dict[str, dict[str, Any]]  # head -> head_info
    num_samples: int

    @property
    def num_outputs(self) -> int | None:
        """The output count a zoo model gets for a single-head dataset: its classes, or the
        target's size for regression; None with several heads."""
        if len(self.heads) != 1:
            return None
        info = next(iter(self.heads.values()))
        if info["task"] == "classification":
            return info["num_classes"]
        return max(1, math.prod(info["shape"]))
