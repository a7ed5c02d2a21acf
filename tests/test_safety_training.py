"""train_safety end to end on a small subset with a stand-in encoder (MiniLM over 30k texts takes
minutes; the code path is the same): checkpoint written, moderator decisions used as examples,
a `safety` version registered, and the classifier then serves it."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command

from registry.models import ModelVersion
from safety import serving
from safety.ml.data import DEFAULT_DATA_ROOT
from safety.models import Action, Decision, Queue, QueueItem

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not (DEFAULT_DATA_ROOT / "sms_spam_collection").exists(), reason="public data not mounted"),
]


def fake_encode(texts: Any, progress: Any = None) -> np.ndarray:
    """A deterministic 32-d 'embedding' from character statistics (no model load)."""
    out = np.zeros((len(texts), 32), dtype=np.float32)
    for i, t in enumerate(texts):
        for ch in t.lower():
            out[i, ord(ch) % 32] += 1.0
        if progress:
            progress(i + 1)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture
def stand_in(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.SAFETY_CHECKPOINT_DIR = tmp_path / "artifacts" / "safety" / "current"
    monkeypatch.setattr("safety.training._encoder", lambda: fake_encode)
    monkeypatch.setattr("safety.serving.encode", fake_encode)
    serving.reset_for_tests()
    yield settings.SAFETY_CHECKPOINT_DIR
    serving.reset_for_tests()


def test_train_safety_registers_a_version_that_then_serves(stand_in: Path, tenant, make_profile, django_user_model):
    # One moderator decision becomes an extra labelled example.
    profile = make_profile(bio="Invest in my crypto fund, guaranteed returns")
    item = QueueItem.objects.create(tenant=tenant, profile=profile, queue=Queue.REVIEW)
    mod = django_user_model.objects.create_user("m", is_staff=True)
    Decision.objects.create(
        tenant=tenant,
        item=item,
        profile=profile,
        moderator=mod,
        action=Action.BAN,
        policy_label="spam_scam",
        rationale="investment scam",
        status_before="active",
        status_after="banned",
        text_snapshot=profile.bio,
        text_hash="h1",
    )
    out = StringIO()
    call_command("train_safety", "--limit", "500", "--c-grid", "4", "--no-progress", stdout=out)
    text = out.getvalue()
    assert "moderator examples {'inappropriate': 0, 'spam_scam': 1, 'harassment': 0}" in text
    assert sorted(p.name for p in stand_in.iterdir()) == ["config.json", "heads.npz"]
    config = json.loads((stand_in / "config.json").read_text())
    assert config["data_ref"]["sms"]["train"] == 400 and config["data_ref"]["sms"]["test"] == 100
    version = ModelVersion.objects.get(tenant=tenant, model_type="safety")
    assert version.status == "active"  # the first version of a slot activates itself
    assert 0.0 <= version.metrics["spam_scam_full_roc_auc"] <= 1.0
    assert "spam_scam_pr" in version.metrics["curves"]
    serving.classifier_for(tenant.pk)  # creates the tenant's holder, which starts loading
    serving._holders[tenant.pk].wait(30)
    clf = serving.classifier_for(tenant.pk)
    assert clf.version == version.label
    (res,) = clf.classify(["WINNER!! claim your free prize, call 09061701461 now"], encode=fake_encode)
    assert res.evidence["spam_scam"]["model_score"] is not None


def test_with_ml_off_the_trained_heads_step_aside_for_the_rules(
    stand_in: Path, tenant: Any, settings: Any, service_client: Any
) -> None:
    call_command("train_safety", "--limit", "300", "--c-grid", "4", "--no-progress", stdout=StringIO())
    serving.classifier_for(tenant.pk)
    serving._holders[tenant.pk].wait(30)
    text = "WINNER!! claim your free prize, call 09061701461 now"
    on = service_client.post("/api/v1/ml/safety/classify", {"texts": [text]}, format="json")
    assert on.status_code == 200 and on.json()["fallback"] is None
    assert on.json()["results"][0]["evidence"]["spam_scam"]["model_score"] is not None
    settings.ML_ENABLED = False
    off = service_client.post("/api/v1/ml/safety/classify", {"texts": [text]}, format="json")
    assert off.status_code == 200
    body = off.json()
    assert body["fallback"] == "ml_disabled" and body["model_version"] == serving.RULES_ONLY_VERSION
    assert body["results"][0]["evidence"]["spam_scam"]["model_score"] is None
    assert body["results"][0]["labels"]["spam_scam"] > 0  # the rules still flag it
