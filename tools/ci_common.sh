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
