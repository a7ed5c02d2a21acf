"""The registry in the Django admin.

* A registry page per tenant and model type: versions side by side with their metrics, which one
  is active, charts of the main metrics across versions and of a run's per-epoch curves, and the
  audit trail.
* Activation, rollback and deactivation, and an experiment's start, stop and promotion, each go
  through a confirmation page (from → to, a required reason) and then a service, which checks the
  permission again and writes the audit row. Only ML admins (and superusers) see the buttons or
  reach the pages (403 otherwise).
* Versions, audit rows and task runs are read-only here: they change only through the services.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from accounts.models import Tenant
from core.admin import ReadOnlyAdmin
from registry.charts import interval_chart, line_chart
from registry.experiments import experiment_report
from registry.jobs import JOBS, task_run_start
from registry.models import (
    AuditLog,
    Experiment,
    ExperimentArm,
    ExperimentStatus,
    ModelType,
    ModelVersion,
    TaskRun,
    VersionStatus,
)
from registry.selectors import (
    active_version,
    can_activate,
    rollback_target,
    slot_audit,
    slot_versions,
    task_run_get,
)
from registry.services import (
    RegistryError,
    experiment_promote,
    experiment_start,
    experiment_stop,
    model_version_activate,
    model_version_deactivate,
    model_version_rollback,
)

VERSIONS_ON_PAGE = 50
PLOTTED_METRICS = 4


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why: kept in the audit log.",
        max_length=2000,
    )


def _require_activate(request: HttpRequest) -> None:
    if not can_activate(request.user):
        raise PermissionDenied("Only ML admins may change which model version is served.")


def slot_url(tenant_id: int, model_type: str) -> str:
    return reverse("admin:registry_modelversion_slot", args=[tenant_id, model_type])


def _scalar_metrics(versions: Sequence[ModelVersion]) -> list[str]:
    names: set[str] = set()
    for version in versions:
        for key, value in (version.metrics or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                names.add(key)
    return sorted(names)


def _curves_chart(version: ModelVersion | None) -> Any:
    curves = (version.metrics or {}).get("curves") if version else None
    if not isinstance(curves, dict) or not curves:
        return None
    series = {
        name: [(epoch, float(v)) for epoch, v in enumerate(values, start=1) if isinstance(v, int | float)]
        for name, values in curves.items()
        if isinstance(values, list)
    }
    assert version is not None
    return line_chart(series, title=f"Training curves of {version.label}", x_label="epoch", y_label="value")


def _confirm(
    request: HttpRequest,
    admin_site: admin.AdminSite,
    *,
    title: str,
    summary: list[tuple[str, str]],
    cancel_url: str,
    perform: Callable[[str], str],
    done_url: str,
    form: ReasonForm | None = None,
) -> HttpResponse:
    """The shared confirmation page: GET shows it, POST with a reason performs the change.
    ``perform(reason)`` returns the success message; a RegistryError is shown on the page."""
    _require_activate(request)
    form = form or ReasonForm(request.POST or None)
    error = None
    if request.method == "POST" and form.is_valid():
        try:
            message = perform(form.cleaned_data["reason"])
        except RegistryError as exc:
            error = str(exc)
        else:
            messages.success(request, message)
            return HttpResponseRedirect(done_url)
    context = {
        **admin_site.each_context(request),
        "title": title,
        "summary": summary,
        "form": form,
        "error": error,
        "cancel_url": cancel_url,
    }
    return TemplateResponse(request, "registry/confirm.html", context, status=400 if error else 200)


def _label(version: ModelVersion | None) -> str:
    if version is None:
        return "— (none)"
    return f"{version.label} ({version.status}, created {version.created_at:%Y-%m-%d %H:%M} by {version.created_by})"


# --- Model versions ------------------------------------------------------------------------------


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("label_link", "tenant", "model_type", "status", "created_at", "created_by", "short_checksum")
    list_filter = ("tenant", "model_type", "status")
    list_select_related = ("tenant",)
    search_fields = ("=id", "created_by", "code_version")
    ordering = ("-created_at",)
    actions = ("activate_selected",)
    readonly_fields = [f.name for f in ModelVersion._meta.fields]

    @admin.display(description="version")
    def label_link(self, obj: ModelVersion) -> str:
        return format_html('<a href="{}">{}</a>', slot_url(obj.tenant_id, obj.model_type), obj.label)

    @admin.display(description="sha256")
    def short_checksum(self, obj: ModelVersion) -> str:
        return obj.checksum[:12]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        import uuid

        term = search_term.strip()
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return can_activate(request.user)

    @admin.action(description="Activate the selected version…", permissions=["activate"])
    def activate_selected(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.WARNING)
            return None
        version = queryset.get()
        return redirect("admin:registry_modelversion_activate", version.pk)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("registry/", wrap(self.registry_index_view), name="registry_modelversion_index"),
            path(
                "registry/<int:tenant_id>/<str:model_type>/",
                wrap(self.slot_view),
                name="registry_modelversion_slot",
            ),
            path(
                "registry/<int:tenant_id>/<str:model_type>/rollback/",
                wrap(self.rollback_view),
                name="registry_modelversion_rollback",
            ),
            path(
                "registry/<int:tenant_id>/<str:model_type>/deactivate/",
                wrap(self.deactivate_view),
                name="registry_modelversion_deactivate",
            ),
            path("<uuid:version_id>/activate/", wrap(self.activate_view), name="registry_modelversion_activate"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"registry_index_url": reverse("admin:registry_modelversion_index"), **(extra_context or {})}
        return super().changelist_view(request, extra)

    def _check_view(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def registry_index_view(self, request: HttpRequest) -> HttpResponse:
        self._check_view(request)
        counts = {
            (row["tenant_id"], row["model_type"]): row["n"]
            for row in ModelVersion.objects.values("tenant_id", "model_type").annotate(n=Count("pk"))
        }
        actives = {(v.tenant_id, v.model_type): v for v in ModelVersion.objects.filter(status=VersionStatus.ACTIVE)}
        rows = [
            {
                "tenant": tenant,
                "model_type": model_type,
                "count": counts.get((tenant.pk, model_type), 0),
                "active": actives.get((tenant.pk, model_type)),
                "url": slot_url(tenant.pk, model_type),
            }
            for tenant in Tenant.objects.order_by("slug")
            for model_type in ModelType.values
        ]
        context = {**self.admin_site.each_context(request), "title": "Model registry", "rows": rows}
        return TemplateResponse(request, "registry/index.html", context)

    def slot_view(self, request: HttpRequest, tenant_id: int, model_type: str) -> HttpResponse:
        self._check_view(request)
        tenant = get_object_or_404(Tenant, pk=tenant_id)
        if model_type not in ModelType.values:
            raise PermissionDenied(f"Unknown model type {model_type}.")
        versions = list(slot_versions(tenant=tenant, model_type=model_type)[:VERSIONS_ON_PAGE])
        metric_names = _scalar_metrics(versions)
        chronological = sorted(versions, key=lambda v: v.version)
        metric_charts = [
            line_chart(
                {name: [(v.version, float(v.metrics[name])) for v in chronological if name in v.metrics]},
                title=f"{name} across versions",
                x_label="version",
                y_label=name,
            )
            for name in metric_names[:PLOTTED_METRICS]
        ]
        wanted = request.GET.get("curves")
        with_curves = [v for v in versions if isinstance((v.metrics or {}).get("curves"), dict)]
        curves_version = next(
            (v for v in with_curves if str(v.version) == wanted), with_curves[0] if with_curves else None
        )
        may_activate = can_activate(request.user)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{model_type} models of {tenant.slug}",
            "tenant": tenant,
            "model_type": model_type,
            "rows": [
                {
                    "version": v,
                    "metrics": [v.metrics.get(name, "") for name in metric_names],
                    "activate_url": (
                        reverse("admin:registry_modelversion_activate", args=[v.pk])
                        if may_activate and v.is_activatable
                        else None
                    ),
                    "curves_url": "?" + urlencode({"curves": v.version}) if v in with_curves else None,
                }
                for v in versions
            ],
            "metric_names": metric_names,
            "metric_charts": metric_charts,
            "curves_chart": _curves_chart(curves_version),
            "active": active_version(tenant_id=tenant.pk, model_type=model_type),
            "rollback_to": rollback_target(tenant_id=tenant.pk, model_type=model_type),
            "may_activate": may_activate,
            "rollback_url": reverse("admin:registry_modelversion_rollback", args=[tenant.pk, model_type]),
            "deactivate_url": reverse("admin:registry_modelversion_deactivate", args=[tenant.pk, model_type]),
            "audit": list(slot_audit(tenant=tenant, model_type=model_type)[:20]),
            "index_url": reverse("admin:registry_modelversion_index"),
        }
        return TemplateResponse(request, "registry/slot.html", context)

    def activate_view(self, request: HttpRequest, version_id: Any) -> HttpResponse:
        version = get_object_or_404(ModelVersion.objects.select_related("tenant"), pk=version_id)
        current = active_version(tenant_id=version.tenant_id, model_type=version.model_type)
        back = slot_url(version.tenant_id, version.model_type)

        def perform(reason: str) -> str:
            model_version_activate(version=version, actor=request.user, reason=reason)
            return f"{version.label} is now active for {version.tenant.slug}."

        return _confirm(
            request,
            self.admin_site,
            title=f"Activate {version.label} for {version.tenant.slug}?",
            summary=[("Tenant", version.tenant.slug), ("From", _label(current)), ("To", _label(version))],
            cancel_url=back,
            perform=perform,
            done_url=back,
        )

    def rollback_view(self, request: HttpRequest, tenant_id: int, model_type: str) -> HttpResponse:
        tenant = get_object_or_404(Tenant, pk=tenant_id)
        current = active_version(tenant_id=tenant.pk, model_type=model_type)
        target = rollback_target(tenant_id=tenant.pk, model_type=model_type)
        back = slot_url(tenant.pk, model_type)

        def perform(reason: str) -> str:
            restored = model_version_rollback(tenant=tenant, model_type=model_type, actor=request.user, reason=reason)
            return f"Rolled back: {restored.label} is active again for {tenant.slug}."

        return _confirm(
            request,
            self.admin_site,
            title=f"Roll back the {model_type} model of {tenant.slug}?",
            summary=[("Tenant", tenant.slug), ("From", _label(current)), ("To", _label(target))],
            cancel_url=back,
            perform=perform,
            done_url=back,
        )

    def deactivate_view(self, request: HttpRequest, tenant_id: int, model_type: str) -> HttpResponse:
        tenant = get_object_or_404(Tenant, pk=tenant_id)
        current = active_version(tenant_id=tenant.pk, model_type=model_type)
        back = slot_url(tenant.pk, model_type)

        def perform(reason: str) -> str:
            retired = model_version_deactivate(tenant=tenant, model_type=model_type, actor=request.user, reason=reason)
            return f"{retired.label} deactivated: no {model_type} model serves {tenant.slug} now."

        return _confirm(
            request,
            self.admin_site,
            title=f"Deactivate the {model_type} model of {tenant.slug}?",
            summary=[("Tenant", tenant.slug), ("From", _label(current)), ("To", "— (none: callers fall back)")],
            cancel_url=back,
            perform=perform,
            done_url=back,
        )


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = (
        "at",
        "actor",
        "action",
        "tenant",
        "model_type",
        "from_version",
        "to_version",
        "experiment",
        "reason",
    )
    list_filter = ("tenant", "model_type", "action")
    list_select_related = ("tenant", "from_version", "to_version", "experiment")
    search_fields = ("actor", "reason")
    date_hierarchy = "at"
    ordering = ("-at", "-pk")


# --- Experiments -----------------------------------------------------------------------------------


class ArmFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        total = sum(f.cleaned_data.get("percent") or 0 for f in kept)
        if kept and total != 100:
            raise forms.ValidationError(f"The arms' percentages sum to {total}; they must sum to 100.")
        experiment = self.instance
        for form in kept:
            version = form.cleaned_data.get("version")
            if (
                version is not None
                and experiment.tenant_id is not None
                and (version.tenant_id != experiment.tenant_id or version.model_type != experiment.model_type)
            ):
                form.add_error("version", "Pick a version of this experiment's tenant and model type.")


class ExperimentArmInline(admin.TabularInline):
    model = ExperimentArm
    formset = ArmFormSet
    extra = 0
    min_num = 2
    fields = ("name", "version", "percent")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "version":
            kwargs["queryset"] = ModelVersion.objects.filter(
                status__in=[VersionStatus.READY, VersionStatus.ACTIVE, VersionStatus.RETIRED]
            ).select_related("tenant")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    # Arms are fixed once an experiment has started: assignment depends on them.
    def _editable(self, obj: Experiment | None) -> bool:
        return obj is None or obj.status == ExperimentStatus.DRAFT

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)  # type: ignore[arg-type]

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)  # type: ignore[arg-type]

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)  # type: ignore[arg-type]


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "model_type", "status", "started_at", "stopped_at", "report_link")
    list_filter = ("tenant", "model_type", "status")
    list_select_related = ("tenant",)
    search_fields = ("name",)
    inlines = (ExperimentArmInline,)
    actions = ("start_selected", "stop_selected")

    def get_readonly_fields(self, request: HttpRequest, obj: Experiment | None = None) -> Sequence[str]:
        fixed = ("status", "started_at", "stopped_at", "winner", "created_at")
        if obj is not None and obj.status != ExperimentStatus.DRAFT:
            return (*fixed, "tenant", "model_type", "name", "salt")
        return fixed

    def has_delete_permission(self, request: HttpRequest, obj: Experiment | None = None) -> bool:
        # Impressions name the experiment's arms; the record stays.
        return False

    @admin.display(description="report")
    def report_link(self, obj: Experiment) -> str:
        return format_html('<a href="{}">report</a>', reverse("admin:registry_experiment_report", args=[obj.pk]))

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return can_activate(request.user)

    def _one(self, request: HttpRequest, queryset: QuerySet[Experiment], url_name: str) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one experiment.", messages.WARNING)
            return None
        return redirect(url_name, queryset.get().pk)

    @admin.action(description="Start the selected experiment…", permissions=["activate"])
    def start_selected(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> HttpResponse | None:
        return self._one(request, queryset, "admin:registry_experiment_start")

    @admin.action(description="Stop the selected experiment…", permissions=["activate"])
    def stop_selected(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> HttpResponse | None:
        return self._one(request, queryset, "admin:registry_experiment_stop")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/report/", wrap(self.report_view), name="registry_experiment_report"),
            path("<int:pk>/start/", wrap(self.start_view), name="registry_experiment_start"),
            path("<int:pk>/stop/", wrap(self.stop_view), name="registry_experiment_stop"),
            path("<int:pk>/promote/<int:arm_id>/", wrap(self.promote_view), name="registry_experiment_promote"),
            *super().get_urls(),
        ]

    def _get(self, request: HttpRequest, pk: int) -> Experiment:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(Experiment.objects.select_related("tenant"), pk=pk)

    def report_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        experiment = self._get(request, pk)
        report = experiment_report(experiment)
        like_chart = interval_chart(
            [(a.arm.name, a.like.value, a.like.low, a.like.high) for a in report.arms],
            title="Like rate per arm (95% Wilson CI)",
            y_label="likes / swipes",
        )
        match_chart = interval_chart(
            [(a.arm.name, a.match.value, a.match.low, a.match.high) for a in report.arms],
            title="Match rate per arm (95% Wilson CI)",
            y_label="matches / impressions",
        )
        may_activate = can_activate(request.user)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Experiment {experiment.name}",
            "experiment": experiment,
            "report": report,
            "like_chart": like_chart,
            "match_chart": match_chart,
            "may_activate": may_activate,
            "promote_urls": {
                a.arm.pk: reverse("admin:registry_experiment_promote", args=[experiment.pk, a.arm.pk])
                for a in report.arms
            }
            if may_activate and experiment.status in (ExperimentStatus.RUNNING, ExperimentStatus.STOPPED)
            else {},
            "start_url": reverse("admin:registry_experiment_start", args=[experiment.pk]),
            "stop_url": reverse("admin:registry_experiment_stop", args=[experiment.pk]),
        }
        return TemplateResponse(request, "registry/experiment_report.html", context)

    def _back(self, experiment: Experiment) -> str:
        return reverse("admin:registry_experiment_report", args=[experiment.pk])

    def _arms_summary(self, experiment: Experiment) -> str:
        return ", ".join(f"{a.name}: {a.version.label} {a.percent}%" for a in experiment.arms.select_related("version"))

    def start_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        experiment = self._get(request, pk)

        def perform(reason: str) -> str:
            experiment_start(experiment=experiment, actor=request.user, reason=reason)
            return f"Experiment {experiment.name} started."

        return _confirm(
            request,
            self.admin_site,
            title=f"Start experiment {experiment.name}?",
            summary=[("Status", f"{experiment.status} → running"), ("Arms", self._arms_summary(experiment))],
            cancel_url=self._back(experiment),
            perform=perform,
            done_url=self._back(experiment),
        )

    def stop_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        experiment = self._get(request, pk)

        def perform(reason: str) -> str:
            experiment_stop(experiment=experiment, actor=request.user, reason=reason)
            return f"Experiment {experiment.name} stopped."

        return _confirm(
            request,
            self.admin_site,
            title=f"Stop experiment {experiment.name}?",
            summary=[("Status", f"{experiment.status} → stopped"), ("Arms", self._arms_summary(experiment))],
            cancel_url=self._back(experiment),
            perform=perform,
            done_url=self._back(experiment),
        )

    def promote_view(self, request: HttpRequest, pk: int, arm_id: int) -> HttpResponse:
        experiment = self._get(request, pk)
        arm = get_object_or_404(ExperimentArm.objects.select_related("version"), pk=arm_id, experiment=experiment)
        current = active_version(tenant_id=experiment.tenant_id, model_type=experiment.model_type)

        def perform(reason: str) -> str:
            experiment_promote(experiment=experiment, arm=arm, actor=request.user, reason=reason)
            return f"Arm {arm.name} promoted: {arm.version.label} is now active."

        return _confirm(
            request,
            self.admin_site,
            title=f"Promote arm {arm.name} of {experiment.name}?",
            summary=[("From", _label(current)), ("To", _label(arm.version)), ("Experiment", "→ promoted")],
            cancel_url=self._back(experiment),
            perform=perform,
            done_url=slot_url(experiment.tenant_id, experiment.model_type),
        )


# --- Task runs ----------------------------------------------------------------------------------------


class StartJobForm(forms.Form):
    kind = forms.ChoiceField(label="Job")
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.order_by("slug"))
    params = forms.CharField(
        label="Parameters",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 40, "placeholder": "groups=pools"}),
        help_text="One name=value per line, as the job's description lists them; empty: the defaults.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(name, job.description or name) for name, job in sorted(JOBS.items())]

    def clean_params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["params"].splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                raise forms.ValidationError(f"Line {number} is not name=value: {line.strip()!r}.")
            if name.strip() in params:
                raise forms.ValidationError(f"{name.strip()} is given twice.")
            params[name.strip()] = value.strip()
        return params

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        kind, params = cleaned.get("kind"), cleaned.get("params")
        if kind in JOBS and params is not None:
            try:
                JOBS[kind].check_params(params)
            except ValueError as exc:
                self.add_error("params", str(exc))
        return cleaned


@admin.register(TaskRun)
class TaskRunAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "tenant", "status", "started_by", "version", "progress_link")
    list_filter = ("tenant", "kind", "status")
    list_select_related = ("tenant", "version")
    ordering = ("-created_at",)

    @admin.display(description="progress")
    def progress_link(self, obj: TaskRun) -> str:
        return format_html('<a href="{}">progress</a>', reverse("admin:registry_taskrun_progress", args=[obj.pk]))

    def has_add_permission(self, request: HttpRequest) -> bool:
        # "Add" starts a job (through task_run_start) on the page below.
        return request.user.has_perm("registry.add_taskrun")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<uuid:run_id>/progress/", wrap(self.progress_view), name="registry_taskrun_progress"),
            *super().get_urls(),
        ]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = StartJobForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            run = task_run_start(kind=data["kind"], tenant=data["tenant"], actor=request.user, params=data["params"])
            return redirect("admin:registry_taskrun_progress", run.pk)
        context = {**self.admin_site.each_context(request), "title": "Start a job", "form": form}
        return TemplateResponse(request, "registry/task_run_start.html", context)

    def progress_view(self, request: HttpRequest, run_id: Any) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            run = task_run_get(run_id=run_id)
        except TaskRun.DoesNotExist:
            return get_object_or_404(TaskRun, pk=run_id)  # raises Http404
        version = run.version
        context = {
            **self.admin_site.each_context(request),
            "title": f"Job {run.kind} for {run.tenant.slug}",
            "run": run,
            "version_url": slot_url(version.tenant_id, version.model_type) if version else None,
        }
        return TemplateResponse(request, "registry/task_run.html", context)
