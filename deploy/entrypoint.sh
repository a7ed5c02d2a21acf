#!/usr/bin/env bash
# The image's entrypoint: the first argument is the role, the rest goes to the role's program.
#
#   web [gunicorn options]             gunicorn on 0.0.0.0:${PORT:-8000} (deploy/gunicorn.conf.py)
#   worker QUEUES [celery options]     a Celery worker for QUEUES (e.g. default,safety)
#   beat [celery options]              the Celery beat: exactly one in a deployment
#   migrate                            apply migrations; then the demo population if PATRA_DEMO=1
#   demo                               the demo population (as `make demo` makes it), if not there yet
#   manage ARGS                        any manage.py command
#   anything else                      run as given (a shell, python, ...)
set -euo pipefail
cd /app

role=${1:-web}
if [ $# -gt 0 ]; then shift; fi

# Remember the role for deploy/healthcheck.py (a separate process, started by the container runtime).
remember_role() {
  printf '%s\n' "$@" > /tmp/patra-role 2>/dev/null || true
}

# The settings refuse a PROMETHEUS_MULTIPROC_DIR that does not exist (a tmpfs /tmp starts empty).
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi

# A long-running role starts with no multiprocess metric files of earlier processes (only these
# roles: a `manage` run beside a live web must not drop the web's files).
fresh_metrics_dir() {
  if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
  fi
}

# The demo population, as scripts/demo.sh makes it: the OkCupid sample and its simulated swipes,
# MiniLM embeddings and the HNSW index, then the collaborative model the feed pools. Tasks run
# in this process (eager), as in `make demo`; every step skips what exists.
populate_demo() {
  export CELERY_TASK_ALWAYS_EAGER=true
  local dir="${PATRA_VAR_DIR:-/var/lib/patra}/demo"
  python manage.py load_demo --if-empty
  python manage.py build_index
  if [ ! -f "$dir/collaborative.done" ]; then
    python manage.py extract_events --output "$dir/events" --start-date 2000-01-01
    python manage.py build_datasets --input "$dir/events" --output "$dir/splits" --split-ratio 0.8,0.1,0.1
    python manage.py train --model lmf --data "$dir/splits" --refit-all
    touch "$dir/collaborative.done"
  fi
}

case "$role" in
  web)
    fresh_metrics_dir
    remember_role web
    exec gunicorn patra.wsgi --config /app/deploy/gunicorn.conf.py "$@"
    ;;
  worker)
    if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
      echo "usage: worker QUEUES [celery options], e.g. worker default,safety --concurrency 2" >&2
      exit 64
    fi
    queues=$1
    shift
    # The node name says which queues it serves: default-safety@<host>.
    node="${queues//,/-}@${HOSTNAME:-worker}"
    fresh_metrics_dir
    remember_role worker "$node"
    exec celery -A patra worker -Q "$queues" --hostname "$node" --loglevel "${LOG_LEVEL:-INFO}" "$@"
    ;;
  beat)
    fresh_metrics_dir
    remember_role beat
    # The schedule file in /tmp: the code is read-only, and a lost file only means beat
    # starts its crontab entries afresh.
    exec celery -A patra beat --schedule /tmp/celerybeat-schedule --loglevel "${LOG_LEVEL:-INFO}" "$@"
    ;;
  migrate)
    python manage.py migrate --noinput "$@"
    if [[ "${PATRA_DEMO:-0}" =~ ^(1|true|yes)$ ]]; then
      populate_demo
    fi
    ;;
  demo)
    populate_demo
    ;;
  manage)
    exec python manage.py "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
