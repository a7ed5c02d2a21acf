#!/usr/bin/env bash
# Install what deploy/test-image.sh needs, from Debian's packages, if missing: buildah (builds and
# runs the image without a Docker daemon) and debootstrap (the stand-in base image).
set -euo pipefail

if command -v buildah >/dev/null && command -v debootstrap >/dev/null; then
    echo "buildah and debootstrap already installed: $(buildah --version)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends buildah debootstrap
echo "installed: $(buildah --version)"
