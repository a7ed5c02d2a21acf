"""deploy/kubernetes: every overlay renders with ``kubectl kustomize``, every manifest validates
against the Kubernetes schemas of two fixed versions (kubernetes-validate), the environment it
gives Patra's containers is the one patra/settings.py reads, complete and accepted by it, and the
pieces that meet real services (the migration gate, the queue KEDA reads) do what the manifests
and docs/deployment.md say, against real PostgreSQL and Redis.

kubectl comes from scripts/install_kubectl.sh (scripts/test.sh runs it); without kubectl these
tests skip. An overlay renders from a copy of deploy/kubernetes whose secrets files are made from
the overlay's ``*.env.example``, as an operator makes them.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.settings_env import settings_env_names

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
KUBECTL = shutil.which("kubectl")
# The Kubernetes versions the manifests must fit: the oldest supported (docs/deployment.md) and
# the newest whose schemas kubernetes-validate (pinned) bundles.
KUBERNETES_VERSIONS = ("1.30", "1.37")
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if (path / "kustomization.yaml").exists())
# Kinds from CRDs kubernetes-validate has no schema for (checked by hand below).
CUSTOM_KINDS = {"ScaledObject"}
# Read by libraries rather than by patra/settings.py: boto3 (the S3 artifact store, as the
# settings' ARTIFACT_STORAGE comment says).
LIBRARY_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
REQUIRED = ("PATRA_ENV", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL")
TEST_SECRET_KEY = "k8s-test-" + "x" * 40

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (scripts/install_kubectl.sh)")

Manifest = dict[str, Any]


# --- rendering ------------------------------------------------------------------------------------
def _copy_tree(target: Path) -> Path:
    """deploy/kubernetes without anyone's real secrets files, with secrets made from the examples."""
    tree = target / "kubernetes"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env", "postgres.env"))
    for example in tree.glob("overlays/*/*.env.example"):
        text = example.read_text()
        if example.name == "secrets.env.example":
            text = text.replace("\nSECRET_KEY=\n", f"\nSECRET_KEY={TEST_SECRET_KEY}\n")
        example.with_suffix("").write_text(text)
    return tree


def _kustomize(directory: Path) -> list[Manifest]:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_tree(tmp_path_factory.mktemp("k8s"))


@pytest.fixture(scope="module")
def rendered(tree: Path) -> dict[str, list[Manifest]]:
    return {overlay: _kustomize(tree / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def with_keda(tree: Path) -> list[Manifest]:
    """The production overlay with the optional KEDA component added, and its worker counts
    removed (KEDA's minimum takes their place), as docs/deployment.md says to."""
    overlay = tree / "overlays" / "production"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    kustomization["components"] = [*kustomization.get("components", []), "../../components/keda-workers"]
    kustomization["replicas"] = [r for r in kustomization.get("replicas", []) if "worker" not in r["name"]]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    try:
        return _kustomize(overlay)
    finally:
        shutil.copy(K8S / "overlays" / "production" / "kustomization.yaml", overlay / "kustomization.yaml")


# --- reading the manifests ------------------------------------------------------------------------
def _find(docs: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def _one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = _find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _pod_specs(docs: list[Manifest]) -> list[tuple[Manifest, Manifest]]:
    return [(d, d["spec"]["template"]["spec"]) for d in docs if d["kind"] in {"Deployment", "StatefulSet", "Job"}]


def _patra_image(docs: list[Manifest]) -> str:
    return str(_one(docs, "Deployment", "patra-web")["spec"]["template"]["spec"]["containers"][0]["image"])


def _patra_containers(docs: list[Manifest]) -> list[tuple[Manifest, Manifest]]:
    """(workload, container) for every container, init containers too, that runs Patra's image."""
    image = _patra_image(docs)
    found = []
    for workload, spec in _pod_specs(docs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            if container["image"] == image:
                found.append((workload, container))
    return found


def _environment(docs: list[Manifest], container: Manifest) -> dict[str, str]:
    """What the container's environment holds: its envFrom ConfigMaps and Secrets, then env."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(_one(docs, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
        if "secretRef" in source:
            secret = _one(docs, "Secret", source["secretRef"]["name"])
            values.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
    for item in container.get("env", []):
        values[item["name"]] = item.get("value", "")
    return values


def _worker_queues(docs: list[Manifest]) -> dict[str, list[str]]:
    """Worker Deployment name -> the queues its command serves (`worker QUEUES [options]`)."""
    queues = {}
    for deployment in _find(docs, "Deployment"):
        args = deployment["spec"]["template"]["spec"]["containers"][0].get("args", [])
        if args[:1] == ["worker"]:
            queues[deployment["metadata"]["name"]] = args[1].split(",")
    return queues


# --- what may be set ------------------------------------------------------------------------------
def _settings_names() -> set[str]:
    """Every variable patra/settings.py reads, as patterns: an f-string's placeholders match any
    upper-case word (``SAFETY_REVIEW_{label.upper()}``)."""
    return settings_env_names(literal=re.escape, placeholder="[A-Z_]+")


def _image_names() -> set[str]:
    """Variables the image's own process files read: deploy/gunicorn.conf.py (os.environ.get) and
    deploy/entrypoint.sh (${NAME...})."""
    names: set[str] = set()
    gunicorn = ROOT / "deploy" / "gunicorn.conf.py"
    if gunicorn.exists():
        for node in ast.walk(ast.parse(gunicorn.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"):
                continue
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    entrypoint = ROOT / "deploy" / "entrypoint.sh"
    if entrypoint.exists():
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", entrypoint.read_text()))
    return names


def _unknown(names: set[str]) -> list[str]:
    allowed = re.compile("|".join(f"(?:{p})" for p in sorted(_settings_names())))
    extra = _image_names() | LIBRARY_VARIABLES
    return sorted(n for n in names if n not in extra and not allowed.fullmatch(n))


# --- the tests ------------------------------------------------------------------------------------
def test_overlays_exist() -> None:
    assert {"small", "production"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    docs = rendered[overlay]
    assert len(docs) > 10
    for doc in docs:
        assert doc["kind"] not in CUSTOM_KINDS
        _validate(doc)


def _validate(doc: Manifest) -> None:
    """Strictly (an unknown field fails) against each version's schema; a kind without one fails."""
    import kubernetes_validate

    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{version}: {doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")


def test_the_keda_component_renders_and_targets_each_worker_by_its_queues(with_keda: list[Manifest]) -> None:
    for doc in with_keda:
        if doc["kind"] not in CUSTOM_KINDS:
            _validate(doc)
    queues = _worker_queues(with_keda)
    scaled = _find(with_keda, "ScaledObject")
    assert sorted(s["spec"]["scaleTargetRef"]["name"] for s in scaled) == sorted(queues)
    for obj in scaled:
        target = obj["spec"]["scaleTargetRef"]["name"]
        lists = [t["metadata"]["listName"] for t in obj["spec"]["triggers"] if t["type"] == "redis"]
        assert sorted(lists) == sorted(queues[target]), target
        assert obj["spec"]["minReplicaCount"] >= 1
        # KEDA owns the count: an applied replicas field would fight it.
        assert "replicas" not in _one(with_keda, "Deployment", target)["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_given_to_patra_is_one_it_reads(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    docs = rendered[overlay]
    names: set[str] = set()
    for _workload, container in _patra_containers(docs):
        names |= set(_environment(docs, container))
    assert "DATABASE_URL" in names  # the environment was found
    unknown = _unknown(names)
    assert not unknown, f"{overlay} sets {unknown}, which neither patra/settings.py nor the image reads"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_patra_container_has_the_required_environment(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    docs = rendered[overlay]
    containers = _patra_containers(docs)
    assert len(containers) >= 10  # web, 3 workers, beat with their init containers, migrate
    for workload, container in containers:
        env = _environment(docs, container)
        where = f"{overlay}: {workload['metadata']['name']}/{container['name']}"
        missing = [name for name in REQUIRED if not env.get(name)]
        assert not missing, f"{where} lacks {missing}"
        assert env["PATRA_ENV"] == "production", where
        if env.get("ARTIFACT_STORAGE") == "s3":
            assert env.get("ARTIFACT_S3_BUCKET"), where


def _load_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import json; from patra import settings as s; print(json.dumps({'production': s.IS_PRODUCTION, "
        "'postgres': s.USING_POSTGRES, 'eager': s.CELERY_TASK_ALWAYS_EAGER, 'storage': s.ARTIFACT_STORAGE, "
        "'hosts': s.ALLOWED_HOSTS, 'debug': s.DEBUG}))"
    )
    clean = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_patra_settings_accept_the_rendered_environment(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    docs = rendered[overlay]
    web = _one(docs, "Deployment", "patra-web")["spec"]["template"]["spec"]["containers"][0]
    done = _load_settings(_environment(docs, web))
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    # Real mode in production: PostgreSQL, Redis as broker with real workers, no debug pages.
    assert loaded["production"] and loaded["postgres"] and not loaded["eager"] and not loaded["debug"]
    assert "patra-web" in loaded["hosts"]


def test_the_example_secrets_refuse_to_start_until_filled_in(rendered: dict[str, list[Manifest]]) -> None:
    """The shipped examples leave SECRET_KEY empty, so a copy deployed as it is fails loudly."""
    for example in K8S.glob("overlays/*/secrets.env.example"):
        assert re.search(r"^SECRET_KEY=$", example.read_text(), re.M), example
    docs = rendered["production"]
    env = _environment(docs, _one(docs, "Deployment", "patra-web")["spec"]["template"]["spec"]["containers"][0])
    done = _load_settings({**env, "SECRET_KEY": ""})
    assert done.returncode != 0 and "SECRET_KEY must be set" in done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_the_ingress_use_allowed_hosts(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    docs = rendered[overlay]
    web = _one(docs, "Deployment", "patra-web")["spec"]["template"]["spec"]["containers"][0]
    env = _environment(docs, web)
    hosts = env["ALLOWED_HOSTS"].split(",")
    # The kubelet calls probes by pod IP; Django refuses a Host outside ALLOWED_HOSTS (400).
    probes = {kind: web[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["startupProbe"]["path"] == probes["livenessProbe"]["path"] == "/livez"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        header = {h["name"]: h["value"] for h in probe.get("httpHeaders", [])}
        assert header.get("Host") in hosts
    # The first load takes about a minute at 1M profiles: readiness, not the startup probe, waits.
    startup = web["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180
    for ingress in _find(docs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] in hosts
            assert f"https://{rule['host']}" in env.get("CSRF_TRUSTED_ORIGINS", "").split(",")
            backend = rule["http"]["paths"][0]["backend"]["service"]
            assert backend["name"] == "patra-web"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_processes_match_the_deployment_guide(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    from django.conf import settings

    docs = rendered[overlay]
    queues = _worker_queues(docs)
    # docs/deployment.md's process table: default+safety, embeddings, training+indexing.
    assert sorted(map(sorted, queues.values())) == [["default", "safety"], ["embeddings"], ["indexing", "training"]]
    assert sorted(q for qs in queues.values() for q in qs) == sorted(q.name for q in settings.CELERY_TASK_QUEUES)
    beat = _one(docs, "Deployment", "patra-beat")
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    assert _one(docs, "Job", "patra-migrate")["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    image = _patra_image(docs)
    for deployment in _find(docs, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        if spec["containers"][0]["image"] == image:
            init = [c["name"] for c in spec.get("initContainers", [])]
            assert init == ["wait-for-migrations"], deployment["metadata"]["name"]
    web = _one(docs, "Deployment", "patra-web")
    assert "replicas" not in web["spec"]  # the HorizontalPodAutoscaler owns it
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = _one(docs, "HorizontalPodAutoscaler", "patra-web")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "patra-web"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    web_labels = web["spec"]["template"]["metadata"]["labels"]
    for selector in (
        _one(docs, "PodDisruptionBudget", "patra-web")["spec"]["selector"]["matchLabels"],
        _one(docs, "Service", "patra-web")["spec"]["selector"],
    ):
        assert selector.items() <= web_labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_selects_pods_and_every_volume_exists(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    docs = rendered[overlay]
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w, _ in _pod_specs(docs)]
    for service in _find(docs, "Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), service["metadata"]["name"]
    claims = {c["metadata"]["name"] for c in _find(docs, "PersistentVolumeClaim")}
    for workload, spec in _pod_specs(docs):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        templates = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        for container in spec.get("initContainers", []) + spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in templates, mount
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            assert len(set(volume) - {"name"}) == 1, volume  # one source: a patch left no emptyDir behind


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_unprivileged_with_a_read_only_root(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    docs = rendered[overlay]
    image = _patra_image(docs)
    for workload, spec in _pod_specs(docs):
        name = workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert "memory" in container["resources"]["limits"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        if spec["containers"][0]["image"] == image:
            assert spec["securityContext"]["runAsUser"] == 10001, name  # the image's user
        for container in spec.get("initContainers", []) + spec["containers"]:
            if container["image"] != image:
                continue
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            # Where the processes write: /tmp (beat's schedule), the metrics and artifact folders.
            # /tmp hides the image's own PROMETHEUS_MULTIPROC_DIR, and the settings refuse a
            # missing one: it must be a mount of its own in every container, init ones too.
            assert {"/tmp", _image_metrics_dir(), "/var/lib/patra", "/var/cache/patra"} <= mounts, name


def _image_metrics_dir() -> str:
    """PROMETHEUS_MULTIPROC_DIR as the Dockerfile sets it (the agreed /tmp/patra-metrics)."""
    dockerfile = ROOT / "Dockerfile"
    found = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", dockerfile.read_text()) if dockerfile.exists() else None
    return found.group(1) if found else "/tmp/patra-metrics"


def test_artifacts_are_shared_the_way_each_overlay_says(rendered: dict[str, list[Manifest]]) -> None:
    small, production = rendered["small"], rendered["production"]
    # One node: a claim every pod mounts. Several: a bucket.
    for docs, storage in ((small, "local"), (production, "s3")):
        web = _one(docs, "Deployment", "patra-web")["spec"]["template"]["spec"]
        assert _environment(docs, web["containers"][0])["ARTIFACT_STORAGE"] == storage
    volumes = {v["name"]: v for v in _one(small, "Deployment", "patra-web")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["artifacts"]["persistentVolumeClaim"]["claimName"] == "patra-artifacts"


@pytest.mark.redis
@pytest.mark.filterwarnings("ignore:task_always_eager has no effect")  # send_task always uses the broker
def test_a_celery_queue_is_the_redis_list_keda_reads() -> None:
    """KEDA's redis list scaler (components/keda-workers) reads a queue's backlog as the length of
    the Redis list named after the queue: what Celery's Redis broker does, checked on a real one."""
    import redis
    from django.conf import settings

    from patra.celery import app

    queue = f"k8s-test-{uuid.uuid4().hex[:12]}"  # no worker consumes it
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        for _ in range(3):
            app.send_task("registry.tasks.sweep_stale_runs", queue=queue)
        assert client.llen(queue) == 3
    finally:
        client.delete(queue)


def _wait_command(docs: list[Manifest]) -> str:
    """The init container's shell loop, with the image's paths pointed at this checkout."""
    web = _one(docs, "Deployment", "patra-web")["spec"]["template"]["spec"]
    (init,) = web["initContainers"]
    assert init["command"] == ["/bin/sh", "-c"]
    script = str(init["args"][0])
    assert "/opt/venv/bin/python /app/manage.py migrate --check" in script
    return script.replace("/opt/venv/bin/python", sys.executable).replace("/app/", f"{ROOT}/")


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_migration_gate_waits_for_unapplied_migrations_then_lets_the_pod_start(
    rendered: dict[str, list[Manifest]],
) -> None:
    """wait-for-migrations, run as the pod runs it, against real PostgreSQL: it passes at once on
    the migrated test database and keeps waiting on a database the migrate Job has not reached."""
    import psycopg
    from django.db import connection

    script = _wait_command(rendered["production"])
    db = connection.settings_dict
    base = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PATRA_VAR_DIR": "/tmp"}

    migrated = subprocess.run(
        ["/bin/sh", "-c", script], env={**env, "DATABASE_URL": f"{base}/{db['NAME']}"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    assert "waiting" not in migrated.stdout

    empty = f"k8s_gate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {empty}")
    try:
        waiting = subprocess.Popen(
            ["/bin/sh", "-c", script], env={**env, "DATABASE_URL": f"{base}/{empty}"},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        watchdog = threading.Timer(90, waiting.kill)  # bounds the test if the gate never reports
        watchdog.start()
        try:
            assert waiting.stdout is not None
            first = waiting.stdout.readline()  # the loop's report after its first failed check
            assert "waiting for the migrate Job" in first
            assert waiting.poll() is None, "the gate let a pod start on a database without migrations"
        finally:
            watchdog.cancel()
            waiting.kill()
            waiting.communicate()
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {empty} WITH (FORCE)")
