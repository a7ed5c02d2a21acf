#!/usr/bin/env bash
# kubectl, whose built-in kustomize renders deploy/kubernetes for tests/test_kubernetes.py, if missing.
# The project's machines come with the `kubectl` package (kubectl 1.32, kustomize v5); this
# installs it when it is not there. The overlays use kustomize v5's syntax: Debian's own
# kubernetes-client (kubectl 1.20, kustomize v2) is too old for them, so it is refused.
set -euo pipefail

kustomize_major() {
    kubectl version --client -o json 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin).get("kustomizeVersion", "v0").lstrip("v").split(".")[0])' \
        2>/dev/null || echo 0
}

if command -v kubectl > /dev/null && [ "$(kustomize_major)" -ge 5 ]; then
    echo "kubectl already installed: $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
    exit 0
fi

"$(dirname "$0")/apt_install.sh" kubectl
if [ "$(kustomize_major)" -lt 5 ]; then
    echo "kubectl with kustomize v5 or later is needed to render deploy/kubernetes; found: $(kubectl version --client 2>&1 | tr '\n' ' ')" >&2
    exit 1
fi
echo "installed: $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
