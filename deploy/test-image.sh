#!/usr/bin/env bash
# Build the image from the Dockerfile, unchanged, and run it: no Docker daemon and no container
# registry needed, only Debian's buildah and debootstrap, this machine's PostgreSQL and Redis.
#
#   1. a stand-in for the base image (python:3.11-slim-bookworm) from Debian's packages, kept in
#      buildah's storage under that name, so FROM finds it locally;
#   2. a wheelhouse of requirements.txt from this machine's pip configuration, served as a package
#      index on loopback and passed as the PIP_INDEX_URL and TORCH_INDEX build arguments (the
#      Dockerfile's own defaults are PyPI and the PyTorch CPU index);
#   3. `buildah bud` of the Dockerfile;
#   4. from the image: migrate, a tenant and a service key, then the web and a worker as separate
#      containers; deploy/image_smoke.py checks /livez, /readyz, profiles through the API embedded
#      by the worker, a feed; the image's HEALTHCHECK passes for the web and the worker; a task
#      sent from one container comes back from the worker (patra.ping).
#
# Run as root (or with sudo rights for apt). Environment: PATRA_IMAGE_TEST_DIR (work folder,
# default var/image-test: caches the wheelhouse), PATRA_IMAGE_TEST_PORT (web port, 18080),
# PATRA_IMAGE_TEST_DATABASE (admin URL of PostgreSQL), PATRA_IMAGE_TEST_REDIS (a Redis database
# the test may empty), PATRA_IMAGE_TEST_DEMO=1 (migrate with PATRA_DEMO=1: the demo population in
# the image too, 5-10 minutes more), KEEP_IMAGE=1 (keep the built image).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=$(realpath -m "${PATRA_IMAGE_TEST_DIR:-var/image-test}")
BASE=python:3.11-slim-bookworm
IMAGE=localhost/patra:image-test
PORT=${PATRA_IMAGE_TEST_PORT:-18080}
INDEX_PORT=$((PORT + 1))
PG_ADMIN=${PATRA_IMAGE_TEST_DATABASE:-postgres://postgres@127.0.0.1:5432/postgres}
DB_NAME=patra_image_test
DATABASE_URL="${PG_ADMIN%/*}/$DB_NAME"
REDIS_URL=${PATRA_IMAGE_TEST_REDIS:-redis://127.0.0.1:6379/14}
BUILDAH=(buildah --storage-driver vfs)
T0=$(date +%s)
step() { echo "== [$(($(date +%s) - T0)) s] $*"; }

./deploy/install-tools.sh
./scripts/setup.sh
mkdir -p "$WORK"
PIDS=()
CONTAINERS=()

# A process and all its descendants (buildah run -> chroot runtime -> gunicorn -> workers):
# TERM, then KILL what is left after 10 s.
stop_tree() {
  local pids=("$1") i=0 child
  while [ $i -lt ${#pids[@]} ]; do
    for child in $(ps -o pid= --ppid "${pids[$i]}" 2>/dev/null); do pids+=("$child"); done
    i=$((i + 1))
  done
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 20); do
    kill -0 "${pids[@]}" 2>/dev/null || return 0
    sleep 0.5
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
}

cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do stop_tree "$pid"; done
  for ctr in "${CONTAINERS[@]}"; do "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true; done
  if [ "${KEEP_IMAGE:-0}" != "1" ]; then "${BUILDAH[@]}" rmi "$IMAGE" >/dev/null 2>&1 || true; fi
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
  if [ $status -ne 0 ]; then
    for log in "$WORK"/*.log; do echo "--- tail of $log"; tail -n 40 "$log"; done
    echo "== FAILED after $(($(date +%s) - T0)) s" >&2
  fi
  exit $status
}
trap cleanup EXIT

standin_base() {
  if "${BUILDAH[@]}" inspect --type image "docker.io/library/$BASE" >/dev/null 2>&1; then
    step "stand-in $BASE: already in buildah's storage"
    return
  fi
  step "stand-in $BASE from Debian's packages (debootstrap)"
  local rootfs="$WORK/rootfs" ctr mnt
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log"
  # The same sources as the official image: bookworm, its updates and security.
  printf '%s\n' "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  ctr=$("${BUILDAH[@]}" from scratch)
  mnt=$("${BUILDAH[@]}" mount "$ctr")
  cp -a "$rootfs/." "$mnt/"
  "${BUILDAH[@]}" umount "$ctr" >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$ctr"
  "${BUILDAH[@]}" commit --rm "$ctr" "docker.io/library/$BASE" >/dev/null
  rm -rf "$rootfs"
}

# pip with the machine's configuration, without its warnings about absent local index folders.
quiet() {
  "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

wheelhouse() {
  local wheels="$WORK/wheels" want ctr
  want=$(sha256sum requirements.txt | cut -d" " -f1)
  if [ "$(cat "$wheels/.requirements.sha" 2>/dev/null)" = "$want" ]; then
    step "wheelhouse: up to date"
  else
    step "wheelhouse of requirements.txt (this machine's pip configuration)"
    rm -rf "$wheels" && mkdir -p "$wheels"
    quiet .venv/bin/python -m pip wheel -q -r requirements.txt -w "$wheels"
    # Wheels built here from source are rebuilt as the Dockerfile builds them: without
    # -march=native (hnswlib), so the image runs on any x86-64 CPU.
    for whl in "$wheels"/*-linux_*.whl; do
      [ -e "$whl" ] || continue
      local name version
      name=$(basename "$whl" | cut -d- -f1)
      version=$(basename "$whl" | cut -d- -f2)
      rm -f "$whl"
      HNSWLIB_NO_NATIVE=1 quiet .venv/bin/python -m pip wheel -q --no-deps --no-cache-dir "$name==$version" -w "$wheels"
    done
    # Dependencies depend on the interpreter (redis needs async-timeout below Python 3.11.3, and
    # Debian's is 3.11.2): resolve once more with the base image's own Python, adding what it
    # needs beside the wheels above (this machine's CA certificates let it reach PyPI here).
    step "wheelhouse: what the base image's Python needs besides"
    ctr=$("${BUILDAH[@]}" from --pull=never "docker.io/library/$BASE")
    CONTAINERS+=("$ctr")
    quiet "${BUILDAH[@]}" run --isolation chroot --network host -v "$wheels:/wheels" \
      -v "$PWD/requirements.txt:/tmp/requirements.txt:ro" \
      -v "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}:/tmp/host-ca.crt:ro" "$ctr" -- \
      sh -c 'python -m venv /tmp/venv && /tmp/venv/bin/pip download -q --disable-pip-version-check \
        --cert /tmp/host-ca.crt --find-links /wheels -r /tmp/requirements.txt -d /wheels'
    "${BUILDAH[@]}" rm "$ctr" >/dev/null
    unset 'CONTAINERS[-1]'
    echo "$want" >"$wheels/.requirements.sha"
  fi
  # A PEP 503 index: simple/<normalised name>/<files>, served by http.server's listings.
  rm -rf "$WORK/index" && mkdir -p "$WORK/index/simple"
  .venv/bin/python - "$wheels" "$WORK/index/simple" <<'EOF'
import os, re, sys
from pathlib import Path
wheels, simple = Path(sys.argv[1]), Path(sys.argv[2])
for dist in wheels.iterdir():
    if dist.name.startswith("."):
        continue
    name = dist.name.split("-")[0] if dist.suffix == ".whl" else dist.name.rsplit("-", 1)[0]
    project = simple / re.sub(r"[-_.]+", "-", name).lower()
    project.mkdir(exist_ok=True)
    os.link(dist, project / dist.name)
EOF
  .venv/bin/python -m http.server "$INDEX_PORT" --bind 127.0.0.1 --directory "$WORK/index" \
    >"$WORK/index.log" 2>&1 &
  PIDS+=($!)
}

build() {
  step "buildah bud of the Dockerfile (stand-in base, local index)"
  "${BUILDAH[@]}" bud --isolation chroot --network host --pull=never --format docker \
    --build-arg "PIP_INDEX_URL=http://127.0.0.1:$INDEX_PORT/simple/" \
    --build-arg "TORCH_INDEX=http://127.0.0.1:$INDEX_PORT/simple/" \
    --build-arg "CODE_VERSION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -t "$IMAGE" -f Dockerfile . >"$WORK/build.log" 2>&1
  step "built $IMAGE: user $(image_config User), entrypoint $(image_config Entrypoint), command $(image_config Cmd)"
}

# A key of the image's configuration (Docker format), as JSON.
image_config() {
  "${BUILDAH[@]}" inspect --type image "$IMAGE" |
    .venv/bin/python -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["Docker"]["config"][sys.argv[1]]))' "$1"
}

# A container from the image with the test's environment; prints its name.
container() {
  local name="patra-image-test-$1"
  "${BUILDAH[@]}" rm "$name" >/dev/null 2>&1 || true
  "${BUILDAH[@]}" from --pull=never --name "$name" "$IMAGE" >/dev/null
  "${BUILDAH[@]}" config --env "DATABASE_URL=$DATABASE_URL" --env "REDIS_URL=$REDIS_URL" \
    --env PATRA_ENV=production --env "SECRET_KEY=$SECRET_KEY" --env ALLOWED_HOSTS=patra-image-test.example,127.0.0.1 \
    --env "PORT=$PORT" --env WEB_CONCURRENCY=2 "$name"
  echo "$name"
}

# Run a command in a container, as the image's user, on the host's network.
in_container() {
  local ctr=$1
  shift
  "${BUILDAH[@]}" run --isolation chroot --network host "$ctr" -- "$@"
}

standin_base
wheelhouse
build

step "database $DB_NAME, Redis $REDIS_URL"
psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" -c "CREATE DATABASE $DB_NAME" >/dev/null
redis-cli -u "$REDIS_URL" flushdb >/dev/null
SECRET_KEY=$(.venv/bin/python -c "import secrets; print(secrets.token_urlsafe(50))")

WEB=$(container web)
CONTAINERS+=("$WEB")
WORKER=$(container worker)
CONTAINERS+=("$WORKER")
[ "$(in_container "$WEB" id -u)" = 10001 ] || { echo "the image does not run as uid 10001" >&2; exit 1; }
ENTRYPOINT=$(image_config Entrypoint | .venv/bin/python -c 'import json, sys; (e,) = json.load(sys.stdin); print(e)')

step "migrate, a tenant and a service key (from the image)"
if [ "${PATRA_IMAGE_TEST_DEMO:-0}" = "1" ]; then
  # migrate with the demo population, as `PATRA_DEMO=1 docker compose up` runs it (+5-10 minutes)
  "${BUILDAH[@]}" run --isolation chroot --network host --env PATRA_DEMO=1 "$WEB" -- \
    "$ENTRYPOINT" migrate >"$WORK/migrate.log" 2>&1
  in_container "$WEB" test -f /var/lib/patra/demo/collaborative.done
  echo "ok: PATRA_DEMO=1: $(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM recommender_profile") profiles, $(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM recommender_swipe") swipes, $(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM recommender_profileembedding") embeddings"
else
  in_container "$WEB" "$ENTRYPOINT" migrate >"$WORK/migrate.log" 2>&1
fi
in_container "$WEB" "$ENTRYPOINT" manage create_tenant imagetest --name "Image test" >>"$WORK/migrate.log" 2>&1
KEY=$(in_container "$WEB" "$ENTRYPOINT" manage create_service_key --tenant imagetest --name image-test | tail -n 1)

step "web and worker"
in_container "$WEB" "$ENTRYPOINT" web >"$WORK/web.log" 2>&1 &
PIDS+=($!)
in_container "$WORKER" "$ENTRYPOINT" worker default,embeddings,training,indexing,safety --concurrency 1 \
  >"$WORK/worker.log" 2>&1 &
PIDS+=($!)

step "checks over HTTP and in the database"
.venv/bin/python deploy/image_smoke.py "http://127.0.0.1:$PORT" "$DATABASE_URL" "$KEY"

step "the image's HEALTHCHECK in each container"
CHECK_LINES=$(image_config Healthcheck |
  .venv/bin/python -c 'import json, sys; t = json.load(sys.stdin)["Test"]; assert t[0] == "CMD", t; print("\n".join(t[1:]))')
mapfile -t CHECK <<<"$CHECK_LINES"
for ctr in "$WEB" "$WORKER"; do
  # The check follows the role its entrypoint recorded; make sure it is not checking nothing.
  role=$(in_container "$ctr" cat /tmp/patra-role)
  echo "   $ctr: role ${role//$'\n'/ }"
  in_container "$ctr" "${CHECK[@]}"
  echo "ok: ${CHECK[*]} passes in $ctr"
done

step "a task round trip through Redis (sent from the web container, run by the worker)"
PONG=$(in_container "$WEB" python -c 'from patra.celery import ping; print(ping.delay().get(timeout=60))')
[ "$PONG" = pong ] || { echo "patra.ping answered ${PONG@Q}" >&2; exit 1; }
echo "ok: patra.ping -> pong"

step "image test passed"
# Record what passed: .ci/run skips the image test while these inputs stay the same.
./deploy/image-inputs.sh > deploy/image-tested.sha256
