# shellcheck shell=bash
# Sourced by the CI scripts (tools/ci_*.sh), not run: what they share.

# A refusal of malformed input, before bgkit starts: the script's name, the problem, exit 2
# (bgkit's own exit code for a bad command line).
refuse() {
    printf '%s: %s\n' "${0##*/}" "$1" >&2
    exit 2
}

# Runs bgkit with ARGS, its stdout (outcome, reason, record path) shown and also copied to the
# job's summary page under TITLE; returns bgkit's exit code. Usage: summarized_bgkit TITLE ARGS...
summarized_bgkit() {
    local title=$1 status
    shift
    bgkit_log=$(mktemp)
    trap 'rm -f "$bgkit_log"' EXIT
    set +e
    "${BGKIT:-bgkit}" "$@" | tee "$bgkit_log"
    status=${PIPESTATUS[0]}
    set -e
    if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then
        {
            printf '### %s: exit %s\n\n' "$title" "$status"
            grep -E '^(outcome|reason|error|record|html): ' "$bgkit_log" | sed 's/^/    /' || true
        } >>"$GITHUB_STEP_SUMMARY"
    fi
    return "$status"
}

# A wave release's manifest, as a dispatch names it: a path in the repository under releases/
# or examples/waves/, ending in .yaml or .yml. No part of it starts with '.' (no '..', no '.'):
# a dispatch must not point bgkit at an arbitrary file, and one file has one spelling (the
# workflow's concurrency group is the path).
check_manifest_path() {
    local path=$1
    [[ $path =~ ^(releases|examples/waves)(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)+\.ya?ml$ ]] ||
        refuse "MANIFEST ${path@Q}: expected the path of a .yaml or .yml file under releases/ or examples/waves/ (no part of it starting with '.'), e.g. releases/checkout-api.yaml"
}

# The longest bake between two waves: one GitHub-hosted job ends after 6 hours, and the bake is
# one job (.github/workflows/wave.yml, timeout-minutes 310).
MAX_BAKE_SECONDS=18000

check_bake_seconds() {
    local seconds=$1
    if [[ ! $seconds =~ ^[0-9]+(\.[0-9]+)?$ ]] || ((10#${seconds%%.*} >= MAX_BAKE_SECONDS)); then
        refuse "bake seconds ${seconds@Q}: expected a number of seconds, 0 to under $MAX_BAKE_SECONDS (a GitHub job lasts at most 6 hours)"
    fi
}
