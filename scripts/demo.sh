#!/usr/bin/env bash
# One command for the demo on the embedded default: venv, install, migrate, demo data, server.
set -euo pipefail
cd "$(dirname "$0")/.."
unset DATABASE_URL REDIS_URL  # the demo is the embedded mode, whatever the shell has set

./scripts/setup.sh
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput --verbosity 0
.venv/bin/python manage.py load_demo --if-empty
.venv/bin/python manage.py build_index  # embeds new profiles (MiniLM, offline), then the HNSW index
# The collaborative model the feed pools (lmf): export, time split, train, register (first version active).
VAR=${PATRA_VAR_DIR:-var}
if [ ! -f "$VAR/demo/collaborative.done" ]; then
  .venv/bin/python manage.py extract_events --output "$VAR/demo/events" --start-date 2000-01-01
  .venv/bin/python manage.py build_datasets --input "$VAR/demo/events" --output "$VAR/demo/splits" --split-ratio 0.8,0.1,0.1
  .venv/bin/python manage.py train --model lmf --data "$VAR/demo/splits" --refit-all
  touch "$VAR/demo/collaborative.done"
fi
PORT=${PORT:-8000}
echo
echo "Patra demo: http://127.0.0.1:${PORT}/admin/  (users and password printed above by load_demo)"
exec .venv/bin/python manage.py runserver "127.0.0.1:${PORT}"
