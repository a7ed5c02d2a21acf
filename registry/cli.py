"""What the model commands share: the tenant they act for, and what they print about a version.

The training commands (``train``, ``train_ranker``, ``export_onnx``, ``build_index``,
``train_safety``) print one line for people, naming the version they registered by id and label
and saying whether it serves, or with ``--json`` one JSON object on stdout and nothing else
(progress bars and logs go to stderr), so that a script can read the result with ``json.loads``.

Activation rule, said wherever a version is registered: the FIRST version of a model type that a
tenant registers starts serving by itself (``registry.services._auto_activate_if_first``, audited
as ``auto_activate``); every later one is only ``ready`` until someone runs ``activate_model``.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from accounts.models import Tenant
from registry.models import ModelType, VersionStatus
from registry.selectors import version_auto_activated, version_get

AUTO_ACTIVATION_HELP = (
    "The first version of a model type registered for a tenant is activated automatically; later "
    "ones are registered as ready and serve only after `manage.py activate_model LABEL --tenant SLUG --reason TEXT`."
)
JSON_HELP = (
    "print one JSON object on stdout (version_id, label, tenant, model_type, status, active, auto_activated, "
    "artifact_path, artifact_uri, metrics) and nothing else; progress bars and logs go to stderr"
)
# The metrics a command prints (and --json carries) per model type, in this order, when present.
HEADLINE_KEYS: dict[str, tuple[str, ...]] = {
    ModelType.COLLABORATIVE: ("model", "validation_metric", "best_epoch", "epochs_run", "train_seconds"),
    ModelType.RANKER: (
        "val_ndcg@10",
        "best_iteration",
        "groups",
        "train_rows",
        "train_seconds",
        "onnx_max_abs_diff",
        "onnx_check_rows",
    ),
    ModelType.INDEX: ("recall_at_10", "size", "dim", "build_seconds"),
}
# The validation score of each type (collaborative: its own ``validation_metric``; safety: the
# weakest label's ROC AUC), shown by list_models.
PRIMARY_KEYS: dict[str, str] = {ModelType.RANKER: "val_ndcg@10", ModelType.INDEX: "recall_at_10"}


# --- Tenants --------------------------------------------------------------------------------------


def tenant_slugs() -> list[str]:
    return list(Tenant.objects.order_by("slug").values_list("slug", flat=True))


def tenant_by_slug(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"Unknown tenant {slug!r}; existing: {', '.join(tenant_slugs()) or 'none'}.")
    return tenant


def tenant_or_only_one(slug: str | None, *, why: str) -> Tenant:
    """The tenant ``--tenant`` names or, without it, the only tenant there is. With several
    tenants the flag is required (``why`` says what would go wrong), so that a command never
    silently picks one, or mixes them."""
    if slug:
        return tenant_by_slug(slug)
    slugs = tenant_slugs()
    if len(slugs) == 1:
        return Tenant.objects.get(slug=slugs[0])
    if not slugs:
        raise CommandError("There is no tenant yet; create one with `manage.py create_tenant SLUG --name NAME`.")
    raise CommandError(f"Several tenants exist ({', '.join(slugs)}): pass --tenant SLUG; {why}.")


# --- Output ---------------------------------------------------------------------------------------


def add_json_argument(parser: CommandParser) -> None:
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


@contextlib.contextmanager
def stdout_kept_for_json(as_json: bool) -> Iterator[None]:
    """With ``--json``, whatever the work prints goes to stderr: stdout carries the JSON only.
    (The command's own ``self.stdout`` wraps the real stdout and is not redirected.)"""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _clean(value: Any) -> Any:
    """A JSON-safe copy: numpy scalars become numbers, NaN and infinities null (strict JSON)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def headline_metrics(model_type: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics worth printing for a version of ``model_type``: the validation score first."""
    out: dict[str, Any] = {}
    if model_type == ModelType.COLLABORATIVE and metrics.get("validation_metric"):
        key = f"val_{metrics['validation_metric']}"
        out[key] = metrics.get(key)
    if model_type == ModelType.SAFETY:
        out.update({k: v for k, v in metrics.items() if k.endswith(("_full_roc_auc", "_full_f1"))})
    for key in HEADLINE_KEYS.get(model_type, ()):
        if key in metrics:
            out[key] = metrics[key]
    return _clean(out)


def primary_metric(model_type: str, metrics: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The one number ``list_models`` shows per version: the validation score of its type (for
    safety the weakest label's ROC AUC), or None when the version has none."""
    if model_type == ModelType.SAFETY:
        aucs = [v for k, v in metrics.items() if k.endswith("_full_roc_auc") and isinstance(v, int | float)]
        return ("min_full_roc_auc", min(aucs)) if aucs else None
    if model_type == ModelType.COLLABORATIVE:
        key = f"val_{metrics.get('validation_metric', 'ndcg@10')}"
    else:
        key = PRIMARY_KEYS.get(model_type, "")
    value = _clean(metrics.get(key))
    return (key, value) if isinstance(value, int | float) else None


def version_summary(
    *,
    model_type: str,
    version_id: Any,
    metrics: Mapping[str, Any],
    artifact_path: Path | str | None,
) -> dict[str, Any]:
    """What a command reports about its result, read back from the registry by ``version_id``
    (None: the command did not register, e.g. ``--no-register``)."""
    version = version_get(version_id=version_id) if version_id else None
    if version_id and version is None:
        raise CommandError(f"Version {version_id} was reported registered but is not in the registry.")
    summary: dict[str, Any] = {
        "version_id": str(version.pk) if version else None,
        "label": version.label if version else None,
        "tenant": version.tenant.slug if version else None,
        "model_type": version.model_type if version else model_type,
        "status": version.status if version else None,
        "active": bool(version and version.status == VersionStatus.ACTIVE),
        "auto_activated": bool(version and version_auto_activated(version=version)),
        "artifact_path": str(artifact_path) if artifact_path else None,
        "artifact_uri": version.artifact_uri if version else None,
        "metrics": headline_metrics(model_type, version.metrics if version else metrics),
    }
    return summary


def registration_text(summary: Mapping[str, Any]) -> str:
    """ "registered as collaborative-v1 (id ...; activated: first version of this type)", or how to
    activate a version that is only ready."""
    if not summary["version_id"]:
        return "not registered"
    label, tenant = summary["label"], summary["tenant"]
    if summary["auto_activated"] and summary["active"]:
        state = f"activated: first {summary['model_type']} version of tenant {tenant}"
    elif summary["active"]:
        state = "active"
    else:
        state = (
            f"{summary['status']}, not active: only a tenant's first version of a type is activated "
            f"automatically; serve it with `manage.py activate_model {label} --tenant {tenant} --reason TEXT`"
        )
    return f"registered as {label} (id {summary['version_id']}; {state})"


def dumps(payload: Any) -> str:
    """One line of strict JSON (no NaN)."""
    return json.dumps(_clean(payload), allow_nan=False, sort_keys=False)
