#!/usr/bin/env bash
# Builds the Kyverno admission controller (github.com/kyverno/kyverno/cmd/kyverno) from the Go module proxy
# into a cache directory outside the repository, keyed by version, and copies the CRDs that ship inside the
# module next to it. Only `make bench` uses it (bench/apiserver.py runs Kyverno outside the cluster against
# the benchmark's kube-apiserver); CI does not.
#
# Usage:
#   hack/kyverno.sh            # last line on stdout: KYVERNO_DIR=<dir> holding kyverno and crds/
#
# Cold: about 17 minutes on 2 busy cores, a ~260 MB binary. A run with the cache full takes a second.
#
# Overrides (environment):
#   KYVERNO_VERSION               (default v1.19.1)
#   IMMUTABLE_OS_WEBHOOK_CACHE    cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/immutable-os-webhook)
set -Eeuo pipefail

KYVERNO_VERSION="${KYVERNO_VERSION:-v1.19.1}"
MODULE="github.com/kyverno/kyverno"

SCRIPT="hack/kyverno.sh" TAG="kyverno"
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK_DIR="${CACHE_ROOT}/kyverno-${KYVERNO_VERSION}"

mkdir -p "${WORK_DIR}"
lock_work_dir

SECONDS=0
# The binary is complete only once the stamp names its version (go build writes the output in place).
if [[ -x "${WORK_DIR}/kyverno" && "$(cat "${WORK_DIR}/.built" 2>/dev/null)" == "${KYVERNO_VERSION}" \
    && -d "${WORK_DIR}/crds" ]]; then
    log "kyverno ${KYVERNO_VERSION}: cached"
    echo "KYVERNO_DIR=${WORK_DIR}" >&3
    exit 0
fi
rm -f "${WORK_DIR}/.built"

STEP="go mod download ${MODULE}@${KYVERNO_VERSION}"
log "building kyverno ${KYVERNO_VERSION} (cold: about 17 minutes on 2 busy cores)"
download="$(go mod download -json "${MODULE}@${KYVERNO_VERSION}")" || {
    echo "${download}" >&2
    false
}
gomod="$(jq -er .GoMod <<<"${download}")"
moddir="$(jq -er .Dir <<<"${download}")"

STEP="wrapper module"
src="${WORK_DIR}/src"
rm -rf "${src}" && mkdir -p "${src}"
cd "${src}"
go mod init immutable-os-webhook.local/kyverno-build 2>/dev/null
go mod edit -go="$(go mod edit -json "${gomod}" | jq -r .Go)"
# Replace directives apply only in the main module: repeat Kyverno's own (its fork of
# k8s.io/pod-security-admission) so the build resolves the same code.
mapfile -t replaces < <(go mod edit -json "${gomod}" | jq -r '(.Replace // [])[]
    | "-replace=\(.Old.Path)\(if .Old.Version then "@" + .Old.Version else "" end)=\(.New.Path)\(if .New.Version then "@" + .New.Version else "" end)"')
log "repeating ${#replaces[@]} replace directive(s): ${replaces[*]}"
[[ ${#replaces[@]} -eq 0 ]] || go mod edit "${replaces[@]}"
go mod edit -require="${MODULE}@${KYVERNO_VERSION}"

STEP="go get ${MODULE}/cmd/kyverno"
go get "${MODULE}/cmd/kyverno@${KYVERNO_VERSION}"

STEP="go build ${MODULE}/cmd/kyverno"
go build -trimpath -ldflags "-s -w" -o "${WORK_DIR}/kyverno" "${MODULE}/cmd/kyverno"

STEP="copy CRDs from ${moddir}/config/crds"
rm -rf "${WORK_DIR}/crds" && mkdir -p "${WORK_DIR}/crds"
find "${moddir}/config/crds" -name '*.yaml' -exec cp {} "${WORK_DIR}/crds/" \;
chmod -R u+w "${WORK_DIR}/crds"

STEP="verify"
help="$(timeout 60 "${WORK_DIR}/kyverno" --help 2>&1 || true)"
[[ "${help}" == *-serverIP* ]] || { echo "kyverno --help does not list -serverIP" >&2; false; }
echo "${KYVERNO_VERSION}" >"${WORK_DIR}/.built"
log "kyverno ${KYVERNO_VERSION}: built in ${SECONDS}s ($(du -h "${WORK_DIR}/kyverno" | cut -f1))"
echo "KYVERNO_DIR=${WORK_DIR}" >&3
