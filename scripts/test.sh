#!/usr/bin/env bash
# One command for the whole suite: set up, lint, migrations check, tests in the embedded mode,
# then the tests again against real PostgreSQL and Redis when they answer (always in CI, where
# PATRA_REQUIRE_REAL_SERVICES=1 makes a missing service an error instead of a skip).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
./scripts/install_browser.sh  # Debian's chromium + chromedriver for the browser tests
./scripts/install_kubectl.sh  # kubectl (kustomize v5) for tests/test_kubernetes.py, which renders deploy/kubernetes
PY=.venv/bin/python

echo "== lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy  # every app module (pyproject.toml)
.venv/bin/lint-imports  # the architecture contracts (.importlinter, docs/architecture.md)
.venv/bin/hadolint Dockerfile  # the image's Dockerfile (deploy/test-image.sh builds and runs it)

echo "== migrations"
env -u DATABASE_URL -u REDIS_URL PATRA_VAR_DIR="$(mktemp -d)" $PY manage.py makemigrations --check --dry-run

echo "== tests, embedded mode (SQLite, local-memory cache, eager Celery)"
# Tests that need PostgreSQL or Redis run in the real-mode run below, not here.
env -u DATABASE_URL -u REDIS_URL PATRA_VAR_DIR="$(mktemp -d)" \
  .venv/bin/pytest -n 2 -q -m "not postgres and not redis" "$@"

DB_URL=${PATRA_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/patra}
CACHE_URL=${PATRA_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}
if $PY scripts/services_up.py "$DB_URL" "$CACHE_URL"; then
  echo "== tests, real mode (PostgreSQL + Redis)"
  # The framework-free unit tests (tests/unit) do not touch a database: once is enough.
  # Tasks that services enqueue run eagerly here (a test has no worker fleet); the broker and
  # worker path itself is tested by tests/test_celery_worker.py with a real worker process.
  DATABASE_URL="$DB_URL" REDIS_URL="$CACHE_URL" PATRA_REQUIRE_REAL_SERVICES=1 CELERY_TASK_ALWAYS_EAGER=true \
    PATRA_VAR_DIR="$(mktemp -d)" \
    .venv/bin/pytest -n 2 -q --ignore=tests/unit "$@"
elif [ "${PATRA_REQUIRE_REAL_SERVICES:-0}" = "1" ]; then
  echo "PostgreSQL or Redis is not reachable and PATRA_REQUIRE_REAL_SERVICES=1" >&2
  exit 1
else
  echo "== PostgreSQL/Redis not reachable: real-mode tests not run (see README, 'Real mode')."
fi
