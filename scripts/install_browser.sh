#!/usr/bin/env bash
# Install the system Chromium and its driver for the browser tests (pytest -m browser), if missing.
# Debian packages only: tools that download their own browser build cannot reach the network here.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "chromium and chromedriver already installed: $(/usr/bin/chromium --version 2>/dev/null || true)"
    exit 0
fi

"$(dirname "$0")/apt_install.sh" chromium chromium-driver
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || true)"
