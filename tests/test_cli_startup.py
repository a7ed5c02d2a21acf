"""Management commands start fast: Django's start-up (settings, app registry, every app's ready(),
admin autodiscovery, system checks, and the URLconf the URL checks import) loads none of the heavy
ML libraries. torch alone took 2.5-4 s of every command's start before they were moved to where
they are used. Checked in a fresh interpreter: the test process has imported them already."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

# Libraries only training, encoding or model serving needs: seconds of import between them.
HEAVY = ("torch", "transformers", "sentence_transformers", "lightgbm", "onnxruntime", "sklearn", "pyarrow")

PROBE = """
import sys
import django
from django.core import checks
from django.urls import get_resolver

HEAVY = {heavy!r}

def loaded():
    return sorted(m for m in HEAVY if m in sys.modules)

django.setup()
assert loaded() == [], f"django.setup() imported {{loaded()}}"
get_resolver().url_patterns  # the URLconf, as runserver, gunicorn and the URL system checks import it
assert loaded() == [], f"importing the URLconf imported {{loaded()}}"
messages = checks.run_checks()  # what every command with system checks runs first
assert loaded() == [], f"the system checks imported {{loaded()}}"
# The probe can see an import: encoding code does load torch.
import recommender.ml.embeddings
assert "torch" in loaded(), "the probe does not see imports"
print("ok", len(messages))
"""


def probe(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "patra.settings", "PYTHONPATH": str(settings.BASE_DIR)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=Path(settings.BASE_DIR), env=env, capture_output=True, text=True, timeout=120
    )


def test_start_up_imports_no_heavy_ml_library() -> None:
    result = probe(PROBE.format(heavy=HEAVY))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


@pytest.mark.parametrize("library", ["torch", "pyarrow"])
def test_the_probe_fails_when_start_up_imports_a_heavy_library(library: str) -> None:
    # The same probe with the library imported first must fail: the check above can fail.
    result = probe(f"import {library}\n" + PROBE.format(heavy=HEAVY))
    assert result.returncode != 0 and f"django.setup() imported ['{library}']" in result.stderr
