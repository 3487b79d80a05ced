# Sourced by hack/control-plane.sh and hack/kyverno.sh (set SCRIPT and TAG first): the cache root, stdout
# kept for the final line (fd 3) while progress goes to stderr, one report of the failing step, log lines.
# shellcheck shell=bash

CACHE_ROOT="${IMMUTABLE_OS_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/immutable-os-webhook}"

# Everything but the final line goes to stderr.
exec 3>&1 1>&2

STEP="startup"
on_error() {
    local rc=$?
    # The trap is inherited by subshells (set -E); report once, from the main shell.
    [[ ${BASH_SUBSHELL} -eq 0 ]] || exit "${rc}"
    echo "${SCRIPT}: FAILED at step: ${STEP} (exit ${rc})" >&2
    exit "${rc}"
}
trap on_error ERR

log() { echo "[${TAG}] $*" >&2; }

STEP="check prerequisites"
for tool in go jq; do
    command -v "${tool}" >/dev/null || { echo "${SCRIPT}: '${tool}' not found on PATH (step: ${STEP})" >&2; exit 1; }
done

# Go builds from the module proxy: static, with this machine's toolchain, no VCS stamping.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:+${GOFLAGS} }-buildvcs=false"

# One build at a time per cache directory: call with WORK_DIR set (fd 9 holds the lock until exit).
lock_work_dir() {
    STEP="lock ${WORK_DIR}"
    exec 9>"${WORK_DIR}/.lock"
    if command -v flock >/dev/null; then
        flock -w 3600 9
    fi
}
