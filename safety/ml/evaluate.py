"""Held-out metrics: precision/recall/F1 at a threshold, ROC AUC, PR curve points."""

from __future__ import annotations

from typing import Any

import numpy as np


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float, curve_points: int = 101) -> dict[str, Any]:
    from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support, roc_auc_score

    pred = (p >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    prec, rec, thr = precision_recall_curve(y, p)
    # Thin the curve to about curve_points points (evenly in recall) to keep the JSON readable.
    keep = np.unique(np.linspace(0, len(prec) - 1, min(curve_points, len(prec))).astype(int))
    return {
        "threshold": float(threshold),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": float(roc_auc_score(y, p)),
        "n": len(y),
        "positives": int(y.sum()),
        "pr_curve": {
            "precision": [round(float(v), 5) for v in prec[keep]],
            "recall": [round(float(v), 5) for v in rec[keep]],
            "threshold": [round(float(thr[min(i, len(thr) - 1)]), 5) for i in keep],
        },
    }
