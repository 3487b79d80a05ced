#!/usr/bin/env bash
# The webhook at work, with kubectl: a denial, a warning and a steered pod.
# Usage: hack/kind/demo.sh [clean]        KUBECTL="kubectl --context kind-immutable-os" to pick a cluster.
# The manifests are in hack/kind/demo/ (tests/e2e/test_chart.py applies the same files).
set -euo pipefail

KUBECTL=${KUBECTL:-kubectl}
DEMO="$(cd "$(dirname "$0")" && pwd)/demo"

k() { ${KUBECTL} "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ kubectl %s\n' "$*"; }

if [[ "${1:-}" == "clean" ]]; then
    k delete -f "${DEMO}/namespaces.yaml" --ignore-not-found --wait=false
    exit 0
fi

say "Nodes: two general-purpose pools, Azure Container Linux and Azure Linux OS Guard (by AKS labels)"
k get nodes -L kubernetes.azure.com/agentpool,kubernetes.azure.com/os-sku,kubernetes.azure.com/os-sku-requested
k apply -f "${DEMO}/namespaces.yaml"
k get namespaces demo-enforce demo-warn -L immutable-os.io/mode

say "1. Denied: a pod writing /usr/local/bin, pinned to the Azure Container Linux pool, in an enforce namespace"
show "-n demo-enforce apply -f demo/tool-installer-on-acl.yaml"
if out=$(k -n demo-enforce apply -f "${DEMO}/tool-installer-on-acl.yaml" 2>&1); then
    echo "${out}"
    echo "unexpected: the pod was admitted (is the webhook installed and ready?)" >&2
    exit 1
fi
echo "${out}"

say "2. Warned: an agent writing /lib/modules pinned to OS Guard, in a namespace labelled immutable-os.io/mode=warn"
show "-n demo-warn apply -f demo/node-agent-on-osguard.yaml"
k -n demo-warn apply -f "${DEMO}/node-agent-on-osguard.yaml"

say "3. Steered: the installer without placement gets required node affinity away from the pools it breaks on"
show "-n demo-enforce apply -f demo/tool-installer.yaml"
k -n demo-enforce apply -f "${DEMO}/tool-installer.yaml"
k -n demo-enforce get pod tool-installer -o jsonpath='{.metadata.annotations.immutable-os\.io/steered}{"\n"}{.spec.affinity.nodeAffinity}{"\n"}'
k -n demo-enforce wait --for=condition=Ready pod/tool-installer --timeout=120s || true
k -n demo-enforce get pod tool-installer -o wide

say "4. Untouched: a read-only log reader works on every pool, Azure Container Linux included"
show "-n demo-enforce apply -f demo/log-reader.yaml"
k -n demo-enforce apply -f "${DEMO}/log-reader.yaml"

say "Done. Clean up with: $0 clean"
