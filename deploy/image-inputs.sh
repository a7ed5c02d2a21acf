#!/usr/bin/env bash
# The SHA-256 of what the image is made of: the files the Dockerfile copies or reads that change
# what it builds (Dockerfile, .dockerignore, compose.yaml, requirements.txt and the files directly
# in deploy/, this record excepted). deploy/test-image.sh writes it to deploy/image-tested.sha256
# when it passes; .ci/run runs the image test whenever the two differ.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  ls Dockerfile .dockerignore compose.yaml requirements.txt
  find deploy -maxdepth 1 -type f ! -name image-tested.sha256
} | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
