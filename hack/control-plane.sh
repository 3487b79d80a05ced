#!/usr/bin/env bash
# Builds the binaries the end-to-end tests run (see docs / tests/e2e): kube-apiserver,
# kube-controller-manager, kube-scheduler and kubectl for one pinned Kubernetes release, etcd and helm,
# all from the Go module proxy, into a cache directory outside the repository keyed by version.
#
# Usage:
#   export "$(hack/control-plane.sh | tail -1)"   # KUBEBUILDER_ASSETS for this shell and its children
#   eval "$(hack/control-plane.sh | tail -1)"     # sets it too, but exported only if it already was
#
# All progress goes to stderr; the last line on stdout is KUBEBUILDER_ASSETS=<bindir>.
# A run with the cache full only checks `--version` of each binary and takes seconds.
#
# Overrides (environment):
#   K8S_VERSION   (default v1.36.3)   ETCD_VERSION (default v3.6.16)   HELM_VERSION (default v3.21.4)
#   IMMUTABLE_OS_WEBHOOK_CACHE        cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/immutable-os-webhook)
set -Eeuo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"

SCRIPT="hack/control-plane.sh" TAG="control-plane"
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK_DIR="${CACHE_ROOT}/k8s-${K8S_VERSION}"
BIN_DIR="${WORK_DIR}/bin"

if [[ ! "${K8S_VERSION}" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
    echo "hack/control-plane.sh: K8S_VERSION must look like v1.<minor>.<patch>, got '${K8S_VERSION}'" >&2
    exit 1
fi
K8S_MINOR="${BASH_REMATCH[1]}"
K8S_PATCH="${BASH_REMATCH[2]}"
STAGING_VERSION="v0.${K8S_MINOR}.${K8S_PATCH}"

mkdir -p "${BIN_DIR}"
lock_work_dir

# have <binary> <expected substring> <version args...>: true when the binary exists, runs, and reports the
# expected version.
have() {
    local bin="${BIN_DIR}/$1" want="$2" out
    shift 2
    [[ -x "${bin}" ]] || return 1
    out="$(timeout 30 "${bin}" "$@" 2>&1)" || return 1
    [[ "${out}" == *"${want}"* ]] || { log "$(basename "${bin}") reports '${out%%$'\n'*}', want ${want}: rebuilding"; return 1; }
}

SECONDS=0

# --- etcd ------------------------------------------------------------------------------------------------
if have etcd "etcd Version: ${ETCD_VERSION#v}" --version; then
    log "etcd ${ETCD_VERSION}: cached"
else
    STEP="etcd ${ETCD_VERSION}: wrapper module"
    log "building etcd ${ETCD_VERSION}"
    src="${WORK_DIR}/etcd-src"
    rm -rf "${src}" && mkdir -p "${src}"
    cd "${src}"
    go mod init immutable-os-webhook.local/etcd-build 2>/dev/null
    STEP="etcd ${ETCD_VERSION}: go get"
    go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
    STEP="etcd ${ETCD_VERSION}: go build"
    go build -trimpath -ldflags "-s -w" -o "${BIN_DIR}/etcd" go.etcd.io/etcd/server/v3
    cd "${WORK_DIR}"
    STEP="etcd ${ETCD_VERSION}: verify"
    have etcd "etcd Version: ${ETCD_VERSION#v}" --version
    log "etcd ${ETCD_VERSION}: built (${SECONDS}s so far)"
fi

# --- helm ------------------------------------------------------------------------------------------------
if have helm "${HELM_VERSION}" version --short; then
    log "helm ${HELM_VERSION}: cached"
else
    STEP="helm ${HELM_VERSION}: go install"
    log "building helm ${HELM_VERSION}"
    # The same version ldflags as helm's Makefile, so `helm version` and the default kube version of
    # `helm template` match what we run.
    HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
    HELM_LDFLAGS+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    HELM_LDFLAGS+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
    HELM_LDFLAGS+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${K8S_MINOR}"
    HELM_LDFLAGS+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
    HELM_LDFLAGS+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${K8S_MINOR}"
    GOBIN="${BIN_DIR}" go install -trimpath -ldflags "${HELM_LDFLAGS}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
    STEP="helm ${HELM_VERSION}: verify"
    have helm "${HELM_VERSION}" version --short
    log "helm ${HELM_VERSION}: built (${SECONDS}s so far)"
fi

# --- kubernetes ------------------------------------------------------------------------------------------
K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
missing=()
for cmd in "${K8S_COMMANDS[@]}"; do
    if [[ "${cmd}" == kubectl ]]; then
        have kubectl "${K8S_VERSION}" version --client || missing+=("${cmd}")
    else
        have "${cmd}" "Kubernetes ${K8S_VERSION}" --version || missing+=("${cmd}")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    log "kubernetes ${K8S_VERSION}: cached"
else
    log "building kubernetes ${K8S_VERSION}: ${missing[*]} (cold: about 5 minutes on 2 cores with the module cache warm, more with downloads)"
    STEP="kubernetes ${K8S_VERSION}: go mod download k8s.io/kubernetes"
    download="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}")" || {
        echo "${download}" >&2
        false
    }
    k8s_gomod="$(jq -er .GoMod <<<"${download}")"

    STEP="kubernetes ${K8S_VERSION}: read staging modules from ${k8s_gomod}"
    mapfile -t staging < <(go mod edit -json "${k8s_gomod}" \
        | jq -r '.Require[] | select(.Version == "v0.0.0" and (.Path | startswith("k8s.io/"))) | .Path')
    [[ ${#staging[@]} -gt 0 ]] || { echo "no k8s.io/* v0.0.0 requirements in ${k8s_gomod}" >&2; false; }
    log "kubernetes ${K8S_VERSION}: ${#staging[@]} staging modules -> ${STAGING_VERSION}"

    STEP="kubernetes ${K8S_VERSION}: wrapper module"
    src="${WORK_DIR}/src"
    rm -rf "${src}" && mkdir -p "${src}"
    cd "${src}"
    go mod init immutable-os-webhook.local/k8s-build 2>/dev/null
    go_directive="$(go mod edit -json "${k8s_gomod}" | jq -r .Go)"
    go mod edit -go="${go_directive}"
    replaces=()
    for m in "${staging[@]}"; do
        replaces+=("-replace=${m}=${m}@${STAGING_VERSION}")
    done
    go mod edit "${replaces[@]}"
    go mod edit -require="k8s.io/kubernetes@${K8S_VERSION}"

    STEP="kubernetes ${K8S_VERSION}: go get"
    pkgs=()
    for cmd in "${missing[@]}"; do
        pkgs+=("k8s.io/kubernetes/cmd/${cmd}@${K8S_VERSION}")
    done
    go get "${pkgs[@]}"

    STEP="kubernetes ${K8S_VERSION}: go build ${missing[*]}"
    K8S_LDFLAGS="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        K8S_LDFLAGS+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
        K8S_LDFLAGS+=" -X ${pkg}.gitMajor=1"
        K8S_LDFLAGS+=" -X ${pkg}.gitMinor=${K8S_MINOR}"
        K8S_LDFLAGS+=" -X ${pkg}.gitTreeState=clean"
    done
    targets=()
    for cmd in "${missing[@]}"; do
        targets+=("k8s.io/kubernetes/cmd/${cmd}")
    done
    go build -trimpath -ldflags "${K8S_LDFLAGS}" -o "${BIN_DIR}/" "${targets[@]}"

    STEP="kubernetes ${K8S_VERSION}: verify"
    for cmd in "${K8S_COMMANDS[@]}"; do
        if [[ "${cmd}" == kubectl ]]; then
            have kubectl "${K8S_VERSION}" version --client
        else
            have "${cmd}" "Kubernetes ${K8S_VERSION}" --version
        fi
    done
    log "kubernetes ${K8S_VERSION}: built (${SECONDS}s so far)"
fi

log "all binaries ready in ${BIN_DIR} (${SECONDS}s)"
echo "KUBEBUILDER_ASSETS=${BIN_DIR}" >&3
