"""Evaluation metrics per output head, from numpy predictions and targets.

Classification: accuracy, top<k>_accuracy, macro precision/recall/F1 (classes absent from
both predictions and targets are left out, as scikit-learn's ``zero_division`` does not),
confusion_matrix (rows: true class). Regression: mse, mae, r2.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def confusion(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (target, pred), 1)
    return m


def classification(scores: np.ndarray, target: np.ndarray, names: list[str]) -> dict[str, Any]:
    num_classes = scores.shape[1]
    pred = scores.argmax(axis=1)
    out: dict[str, Any] = {}
    cm = confusion(pred, target, max(num_classes, int(target.max()) + 1 if target.size else 0))
    tp = np.diag(cm).astype(np.float64)
    present = (cm.sum(0) + cm.sum(1)) > 0
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    for name in names:
        if name == "accuracy":
            out[name] = float((pred == target).mean())
        elif name.startswith("top"):
            k = min(int(name[3:].split("_")[0]), num_classes)
            topk = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            out[name] = float((topk == target[:, None]).any(axis=1).mean())
        elif name in ("precision", "recall", "f1"):
            values = {"precision": precision, "recall": recall, "f1": f1}[name]
            out[name] = float(values[present].mean()) if present.any() else 0.0
        elif name == "confusion_matrix":
            out[name] = cm.tolist()
    return out


def regression(pred: np.ndarray, target: np.ndarray, names: list[str]) -> dict[str, Any]:
    pred, target = pred.reshape(len(pred), -1).astype(np.float64), target.reshape(len(target), -1).astype(np.float64)
    err = pred - target
    out: dict[str, Any] = {}
    for name in names:
        if name == "mse":
            out[name] = float((err ** 2).mean())
        elif name == "mae":
            out[name] = float(np.abs(err).mean())
        elif name == "r2":
            ss_tot = float(((target - target.mean(0)) ** 2).sum())
            out[name] = 1.0 - float((err ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
    return out


def compute(task: str, output: np.ndarray, target: np.ndarray, names: list[str]) -> dict[str, Any]:
    if not names or not len(target):
        return {}
    return classification(output, target, names) if task == "classification" else regression(output, target, names)
