"""Tests for recommender.ml.embeddings, against sentence-transformers as the reference."""

from __future__ import annotations

import os
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

from recommender.ml.embeddings import (
    BioEncoder,
    ModelNotAvailable,
    bf16_supported,
    get_encoder,
    pick_device,
    profile_text,
    resolve_model_path,
)

pytestmark = pytest.mark.slow  # loads the real MiniLM model (twice: ours and the reference)

LONG_BIO = " ".join(
    f"Paragraph {i}: I love long walks, indie films, cooking ramen from scratch and arguing about books."
    for i in range(40)
)  # well over 256 tokens: exercises truncation

TEXTS: list[str] = [
    "",
    "Hi",
    "ok",
    "Dog person.",
    "I like hiking and coffee.",
    "Looking for someone to explore farmers markets with on Sunday mornings.",
    "Software engineer by day, amateur baker by night. My sourdough starter is named Gerald.",
    "Nurse working night shifts; I value honesty, kindness and a good sense of humour.",
    "Climber 🧗‍♀️, coffee snob ☕, plant mom 🌱🌵",
    "🎉🎉🎉",
    "😀",
    "J'adore les voyages, la cuisine italienne et les longues promenades au bord de la mer.",
    "Me encanta bailar salsa y conocer gente nueva los fines de semana.",
    "Ich spiele Gitarre in einer Band und trinke gern Bier mit Freunden.",
    "Sono un architetto che ama il buon vino e i viaggi in montagna.",
    "我喜欢看电影和旅行，也喜欢做饭。",
    "映画と音楽が大好きです。週末はカフェでのんびりしています。",
    "Люблю книги, горы и долгие разговоры на кухне.",
    "أحب القراءة والسفر والتعرف على ثقافات جديدة",
    "मुझे संगीत और यात्रा पसंद है",
    LONG_BIO,
    LONG_BIO[:1500],
    "word " * 600,
    "Vegan. Yoga teacher. Cat lover. Not into drama.",
    "PhD student in astrophysics; ask me about black holes or my terrible puns.",
    "Single dad of two great kids, weekend fisherman, amateur chef.",
    "   leading and trailing whitespace   ",
    "ALL CAPS BIO BECAUSE I AM EXCITED",
    "numbers 1234567890 and symbols !@#$%^&*()",
    "https://example.com is my website, email me at someone@example.com",
    "Tab\tseparated\ttext\nwith\nnewlines",
    "Travel: 34 countries so far. Next: Patagonia.",
    "I'm a bit shy at first but very chatty once I know you.",
    "Gym rat 💪 and foodie 🍕🍣🍜",
    "Marathon runner, early riser, tea drinker.",
    "Looking for something serious. No hookups please.",
    "Bookworm 📚 — currently reading Dostoevsky.",
    "Musician (piano, violin) and part-time teacher.",
    "Can't stop watching true crime documentaries.",
    "Love: dogs, tacos, road trips. Hate: pineapple on pizza.",
    "Q: Best travel story? A: Missed a train in Kyoto and ended up at a festival.",
]


@pytest.fixture(scope="module")
def encoder() -> BioEncoder:
    return BioEncoder("all-MiniLM-L6-v2", device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def reference_vectors() -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(resolve_model_path("all-MiniLM-L6-v2")), device="cpu", local_files_only=True)
    return model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)  # (n, 384)


def test_matches_sentence_transformers(encoder: BioEncoder, reference_vectors: np.ndarray) -> None:
    ours = encoder.encode(TEXTS)
    assert ours.shape == (len(TEXTS), 384)
    assert ours.dtype == np.float32
    cosines = np.sum(ours * reference_vectors, axis=1) / np.linalg.norm(reference_vectors, axis=1)
    print(f"\nmin cosine vs sentence-transformers over {len(TEXTS)} texts: {cosines.min():.7f}")
    assert cosines.min() >= 0.999, TEXTS[int(np.argmin(cosines))]


def test_bf16_matches_sentence_transformers_at_the_feed_bar(reference_vectors: np.ndarray) -> None:
    """torch-bf16 keeps the feed's 0.999 agreement with the fp32 reference, on these edge cases too
    (emoji, scripts other than Latin, truncated texts): stored fp32 vectors stay comparable."""
    if not bf16_supported("cpu"):
        pytest.skip("this CPU has neither AMX nor AVX512-BF16: the torch-bf16 backend is refused here")
    ours = BioEncoder("all-MiniLM-L6-v2", device="cpu", batch_size=8, backend="torch-bf16").encode(TEXTS)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    cosines = np.sum(ours * reference_vectors, axis=1) / np.linalg.norm(reference_vectors, axis=1)
    print(f"\ntorch-bf16: min cosine vs sentence-transformers over {len(TEXTS)} texts: {cosines.min():.7f}")
    assert cosines.min() >= 0.999, TEXTS[int(np.argmin(cosines))]


def test_dim_norms_and_attributes(encoder: BioEncoder) -> None:
    vecs = encoder.encode(["", "hello", LONG_BIO])
    assert encoder.dim == 384
    assert encoder.device == "cpu"
    assert encoder.model_name == "all-MiniLM-L6-v2"
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_input_order_preserved_when_lengths_vary(encoder: BioEncoder) -> None:
    texts = TEXTS[:12]
    together = encoder.encode(texts)  # sorted by length internally, several batches
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)
    reversed_vecs = encoder.encode(texts[::-1])
    np.testing.assert_allclose(reversed_vecs[::-1], together, atol=1e-4)


def test_empty_input_and_progress(encoder: BioEncoder) -> None:
    assert encoder.encode([]).shape == (0, 384)
    seen: list[int] = []
    encoder.encode(TEXTS[:20], progress=seen.append)  # batch_size 8 -> 3 batches
    assert seen == [8, 16, 20]


def test_encode_is_thread_safe(encoder: BioEncoder) -> None:
    expected = encoder.encode(TEXTS[:10])
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(encoder.encode(TEXTS[:10]))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


def test_resolve_model_path() -> None:
    bundled = resolve_model_path("all-MiniLM-L6-v2")
    assert (bundled / "config.json").is_file()
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == bundled
    assert resolve_model_path(str(bundled)) == bundled
    with pytest.raises(ModelNotAvailable, match="all-MiniLM-L6-v2"):
        resolve_model_path("bert-base-uncased")
    with pytest.raises(ModelNotAvailable):
        resolve_model_path("/no/such/model/dir")


def test_unknown_model_fails_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable):
        BioEncoder(str(tmp_path / "missing"))


def test_pick_device() -> None:
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="expected one of"):
        pick_device("tpu")


def test_pick_device_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import recommender.ml.embeddings as emb

    monkeypatch.setattr(emb, "_cuda_available", lambda: False)
    monkeypatch.setattr(emb, "_mps_available", lambda: False)
    assert pick_device("auto") == "cpu"
    with pytest.raises(ValueError, match="not available"):
        pick_device("cuda")
    monkeypatch.setattr(emb, "_mps_available", lambda: True)
    assert pick_device("auto") == "mps"


def test_get_encoder_is_cached() -> None:
    a = get_encoder("all-MiniLM-L6-v2", "cpu")
    b = get_encoder("sentence-transformers/all-MiniLM-L6-v2", "cpu")
    assert a is b


def test_profile_text() -> None:
    prompts = [
        {"question": "My ideal Sunday", "answer": "  brunch and a   long walk "},
        {"question": "Unanswered", "answer": ""},
        {"question": "Two truths and a lie", "answer": "I speak 3 languages"},
    ]
    assert profile_text("  Hello   there ", prompts) == (
        "Hello there\nMy ideal Sunday brunch and a long walk\nTwo truths and a lie I speak 3 languages"
    )
    assert profile_text("", []) == ""
    assert profile_text("", prompts[:1]) == "My ideal Sunday brunch and a long walk"
