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

say "Nodes: two general-purpose pools, Flatcar and Azure Linux OS Guard (by AKS labels)"
k get nodes -L kubernetes.azure.com/os-sku,immutable-os.io/profile
k apply -f "${DEMO}/namespaces.yaml"
k get namespaces demo-enforce demo-warn -L immutable-os.io/mode

say "1. Denied: a hostPath pod pinned to the Flatcar pool, in an enforce namespace"
show "-n demo-enforce apply -f demo/log-reader-on-flatcar.yaml"
if out=$(k -n demo-enforce apply -f "${DEMO}/log-reader-on-flatcar.yaml" 2>&1); then
    echo "${out}"
    echo "unexpected: the pod was admitted (is the webhook installed and ready?)" >&2
    exit 1
fi
echo "${out}"

say "2. Warned: a hostPID + hostPath agent pinned to OS Guard, in a namespace labelled immutable-os.io/mode=warn"
show "-n demo-warn apply -f demo/node-agent-on-osguard.yaml"
k -n demo-warn apply -f "${DEMO}/node-agent-on-osguard.yaml"

say "3. Steered: the log reader without placement gets required node affinity away from the immutable pools"
show "-n demo-enforce apply -f demo/log-reader.yaml"
k -n demo-enforce apply -f "${DEMO}/log-reader.yaml"
k -n demo-enforce get pod log-reader -o jsonpath='{.metadata.annotations.immutable-os\.io/steered}{"\n"}{.spec.affinity.nodeAffinity}{"\n"}'
k -n demo-enforce wait --for=condition=Ready pod/log-reader --timeout=120s || true
k -n demo-enforce get pod log-reader -o wide

say "Done. Clean up with: $0 clean"
