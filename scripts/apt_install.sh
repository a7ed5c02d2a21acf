#!/usr/bin/env bash
# Install Debian packages: `scripts/apt_install.sh PACKAGE...`, through sudo when not root.
# The one way the repo's install scripts (install_browser.sh, install_kubectl.sh) reach apt.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "$@"
