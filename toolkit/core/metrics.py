"""Classification metrics from labels and probabilities (numpy only, shared by train/verify/bench)."""

from __future__ import annotations

import numpy as np


def classification_metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/support, and the confusion matrix (rows: true)."""
    labels = np.asarray(labels, dtype=np.int64)
    pred = np.asarray(probs).argmax(axis=1)
    n = len(classes)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {}
    for k, name in enumerate(classes):
        tp = int(confusion[k, k])
        predicted, actual = int(confusion[:, k].sum()), int(confusion[k, :].sum())
        per_class[name] = {
            "precision": tp / predicted if predicted else 0.0,
            "recall": tp / actual if actual else 0.0,
            "support": actual,
        }
    return {
        "accuracy": float((pred == labels).mean()) if len(labels) else 0.0,
        "count": int(len(labels)),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def accuracy(labels, probs) -> float:
    labels = np.asarray(labels)
    return float((np.asarray(probs).argmax(axis=1) == labels).mean()) if len(labels) else 0.0
