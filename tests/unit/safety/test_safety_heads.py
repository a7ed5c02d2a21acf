"""Heads train, calibrate, round-trip through the npz/json checkpoint and separate spam.

The embedding here is a fixed random projection of the hashed features (no MiniLM: unit tests
must stay fast); the code path is the one train_safety runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from safety.ml.data import DEFAULT_DATA_ROOT, binary_targets, load_sms
from safety.ml.evaluate import binary_metrics
from safety.ml.hashing import hashed_matrix
from safety.ml.heads import TextHeads, TrainingSet, train_heads

pytestmark = pytest.mark.skipif(
    not (DEFAULT_DATA_ROOT / "sms_spam_collection").exists(), reason="public data not mounted"
)


def fake_embed(texts: list[str], dim: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((hashed_matrix(["x"]).shape[1], dim)).astype(np.float32)
    v = np.asarray(hashed_matrix(texts) @ proj)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TextHeads, Path, list[str], np.ndarray, np.ndarray]:
    ds = load_sms()
    n = 1500
    texts, y = ds.texts[:n], binary_targets(ds, "spam_scam")[:n]
    train = np.arange(n) % 5 != 0
    tr_texts = [t for t, k in zip(texts, train, strict=True) if k]
    emb = fake_embed(texts)
    heads = train_heads(
        {"spam_scam": TrainingSet(tr_texts, emb[train], y[train], np.ones(int(train.sum())), "sms subset")},
        embedding_model="test-projection",
        c_grid=(4.0,),
        log=lambda m: None,
    )
    path = tmp_path_factory.mktemp("ckpt") / "heads"
    heads.save(path)
    test_texts = [t for t, k in zip(texts, train, strict=True) if not k]
    return heads, path, test_texts, emb[~train], y[~train]


def test_heads_separate_spam_on_held_out_rows(trained) -> None:
    heads, _, texts, emb, y = trained
    p = heads.predict_proba(texts, emb)["spam_scam"]
    m = binary_metrics(y, p, heads.heads["spam_scam"].threshold)
    assert m["roc_auc"] > 0.95
    assert m["f1"] > 0.8
    assert p.min() >= 0.0 and p.max() <= 1.0


def test_checkpoint_round_trip_without_pickle(trained) -> None:
    heads, path, texts, emb, _ = trained
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "heads.npz"]
    config = json.loads((path / "config.json").read_text())
    assert config["embedding_model"] == "test-projection" and "spam_scam" in config["heads"]
    with np.load(path / "heads.npz", allow_pickle=False) as arrays:
        assert all(arrays[k].dtype == np.float32 for k in arrays.files)
    loaded = TextHeads.load(path)
    a = heads.predict_proba(texts, emb)["spam_scam"]
    b = loaded.predict_proba(texts, emb)["spam_scam"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_calibration_is_roughly_honest(trained) -> None:
    heads, _, texts, emb, y = trained
    p = heads.predict_proba(texts, emb)["spam_scam"]
    # Mean predicted probability close to the observed positive rate on held-out rows.
    assert abs(p.mean() - y.mean()) < 0.05


def test_top_tokens_name_words_of_the_text(trained) -> None:
    heads = trained[0]
    text = "FREE entry! Claim your prize now, txt WIN to 80082"
    tokens = heads.top_tokens("spam_scam", text, min_weight=0.0)
    assert tokens and all(t in text.lower() for t in tokens)


def test_checkpoint_with_other_features_is_refused(trained, tmp_path: Path) -> None:
    _, path, *_ = trained
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((path / "config.json").read_text())
    config["n_buckets"] = 12
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "heads.npz").write_bytes((path / "heads.npz").read_bytes())
    with pytest.raises(ValueError, match="other features"):
        TextHeads.load(bad)


def test_rule_scale_follows_out_of_fold_evidence() -> None:
    from safety.ml.heads import _best_rule_scale

    texts = ["call +1 415 555 0199 now", "my number is +1 415 555 0123", "hello there", "see you soon"]
    # The head alone is already right: the phone rule's full weight (0.6) would push the ham text
    # with a phone number over the threshold, so the rules keep only the largest say that does
    # not (0.5: noisy_or(0.2, 0.3) = 0.44 < 0.5; 0.75 gives 0.56).
    y = np.array([1, 0, 0, 0])
    p = np.array([0.9, 0.2, 0.05, 0.05])
    assert _best_rule_scale("spam_scam", texts, y, p, threshold=0.5) == 0.5
    # The head misses a spam text that the rule catches: the rules keep their full weight.
    y = np.array([1, 1, 0, 0])
    assert _best_rule_scale("spam_scam", texts, y, p, threshold=0.5) == 1.0
