"""Safety classifier benchmark: held-out metrics of our heads (+ rules) against a TF-IDF +
logistic regression baseline, trained and evaluated in the same run on the same splits.

    .venv/bin/python -m bench.safety [--max-train N]

Splits: every fifth row of each public file (row index mod 5 == 0, file order) is the test split;
both models train and tune (C, calibration, threshold) on the other rows only. Embeddings of the
public sets are cached under ARTIFACT_ROOT/safety/embedding-cache (computed once, minutes on CPU).
Writes bench/results/safety.json (with PR curve points) and prints a table.

Targets: spam_scam F1 >= 0.95 on the SMS test split; inappropriate/harassment (hate or offensive
vs neither) ROC AUC >= 0.95 on the Davidson test split; ours ahead of the baseline on both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np

from bench.common import format_table, machine_info, write_result

TARGETS = {"spam_scam": ("f1", 0.95), "inappropriate": ("roc_auc", 0.95), "harassment": ("roc_auc", 0.95)}


def baseline(train_texts: list[str], y: np.ndarray, test_texts: list[str], yt: np.ndarray) -> dict[str, Any]:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression; C by 5-fold CV log loss and
    the F1-best threshold on out-of-fold probabilities, like ours."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    from safety.ml.evaluate import binary_metrics
    from safety.ml.heads import C_GRID, _best_f1_threshold

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    best: tuple[float, float, np.ndarray] | None = None
    for C in C_GRID:
        pipe = make_pipeline(
            TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2),
            LogisticRegression(C=C, solver="liblinear", max_iter=2000),
        )
        oof = cross_val_predict(pipe, train_texts, y, cv=folds, method="predict_proba")[:, 1]
        loss = log_loss(y, oof)
        if best is None or loss < best[0]:
            best = (loss, C, oof)
    assert best is not None
    _, C, oof = best
    threshold = _best_f1_threshold(y, oof)
    pipe = make_pipeline(
        TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2),
        LogisticRegression(C=C, solver="liblinear", max_iter=2000),
    )
    pipe.fit(train_texts, y)
    out = binary_metrics(yt, pipe.predict_proba(test_texts)[:, 1], threshold)
    out["C"] = C
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-train", type=int, default=None, help="first N training rows of each set")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patra.settings")
    import django

    django.setup()
    from django.conf import settings

    from safety.ml.heads import train_heads
    from safety.training import evaluate_heads, load_public, targets, training_sets

    t0 = time.perf_counter()
    data = load_public(max_train=args.max_train)
    t_embed = time.perf_counter() - t0
    heads = train_heads(training_sets(data), embedding_model=settings.EMBEDDING_MODEL, log=print)
    t_train = time.perf_counter() - t0 - t_embed
    ours = evaluate_heads(heads, data)
    sms_base = baseline(
        data.sms_train.texts,
        targets(data.sms_train, "spam_scam"),
        data.sms_test.texts,
        targets(data.sms_test, "spam_scam"),
    )
    dav_base = baseline(
        data.dav_train.texts,
        targets(data.dav_train, "inappropriate"),
        data.dav_test.texts,
        targets(data.dav_test, "inappropriate"),
    )
    results: dict[str, Any] = {}
    rows = []
    for label, (metric, goal) in TARGETS.items():
        base = sms_base if label == "spam_scam" else dav_base
        r = {
            "dataset": ours[label]["dataset"],
            "ours_head": ours[label]["head"],
            "ours_full": ours[label]["full"],
            "baseline_tfidf_lr": base,
            "target": {"metric": metric, "value": goal},
        }
        best_ours = max(r["ours_head"][metric], r["ours_full"][metric])
        r["meets_target"] = best_ours >= goal
        r["ahead_of_baseline"] = best_ours > base[metric]
        results[label] = r
        for name, m in (("ours: heads", r["ours_head"]), ("ours: heads+rules", r["ours_full"]), ("tfidf+lr", base)):
            rows.append([label, name, m["precision"], m["recall"], m["f1"], m["roc_auc"]])
    payload = {
        "benchmark": "safety",
        "machine": machine_info(),
        "embedding_model": settings.EMBEDDING_MODEL,
        "train_rows": {"sms": len(data.sms_train.texts), "davidson": len(data.dav_train.texts)},
        "test_rows": {"sms": len(data.sms_test.texts), "davidson": len(data.dav_test.texts)},
        "split": "test = row index mod 5 == 0 in file order; never trained or tuned on",
        "seconds": {"embed_or_load_cache": round(t_embed, 1), "train_heads": round(t_train, 1)},
        "results": results,
    }
    path = write_result("safety", payload)
    print(format_table(["label", "model", "precision", "recall", "F1", "ROC AUC"], rows))
    for label, r in results.items():
        metric, goal = TARGETS[label]
        print(
            f"{label}: target {metric} >= {goal}: {'met' if r['meets_target'] else 'NOT met'}; "
            f"ahead of baseline: {'yes' if r['ahead_of_baseline'] else 'no'}"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
