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
#
# A cancelled job: GitHub sends SIGINT to the step's process only (the script, which the workflow
# runs with `exec`), SIGTERM 7.5 s later, and kills the process tree 2.5 s after that. The first
# of these signals reaches bgkit once, as SIGINT: the release puts blue back and writes its
# record (exit 4). No later one is passed on: a second SIGINT would interrupt that rollback.
# bgkit runs in a process group of its own, so a terminal's Ctrl-C reaches it only this way too.
summarized_bgkit() {
    local title=$1 status tee_pid out
    shift
    bgkit_log=$(mktemp)
    trap 'rm -f "$bgkit_log"' EXIT
    bgkit_pid='' bgkit_stopping='' bgkit_signalled=''
    trap stop_bgkit_once INT TERM HUP
    # The copy ignores INT, TERM and HUP: a signal to the whole process group (a terminal's
    # Ctrl-C or hang-up, `timeout`, `kill -- -PGID`) must not end it while bgkit still writes
    # to it (bgkit's last lines, the outcome and the record's path, would be lost).
    exec {out}> >(trap '' INT TERM HUP && exec tee "$bgkit_log")
    tee_pid=$!
    # A process group of its own (set -m), where SIGINT is not ignored as in a script's other
    # background jobs; no stdin (a background group that reads a terminal is stopped).
    set -m
    "${BGKIT:-bgkit}" "$@" </dev/null >&"$out" {out}>&- &
    bgkit_pid=$!
    set +m
    exec {out}>&- # tee ends when bgkit (and whatever it started) has closed its stdout
    [[ -z $bgkit_stopping ]] || stop_bgkit_once # a signal came before bgkit_pid was set
    status=0
    wait_for_end "$bgkit_pid" || status=$?
    wait_for_end "$tee_pid" || true # the log is complete before the summary reads it
    if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then
        {
            printf '### %s: exit %s\n\n' "$title" "$status"
            grep -E '^(outcome|reason|error|record|html): ' "$bgkit_log" | sed 's/^/    /' || true
        } >>"$GITHUB_STEP_SUMMARY"
    fi
    return "$status"
}

# The trap of summarized_bgkit: the first INT, TERM or HUP goes on to bgkit as SIGINT; later
# ones are not passed on.
stop_bgkit_once() {
    bgkit_stopping=1
    [[ -n $bgkit_pid && -z $bgkit_signalled ]] || return 0
    bgkit_signalled=1
    kill -INT "$bgkit_pid" 2>/dev/null || true
}

# Waits until the background process PID has ended and returns its exit status: `wait` returns
# early (over 128) when a trapped signal arrives, and bash keeps an ended job's status for the
# next `wait`.
wait_for_end() {
    while kill -0 "$1" 2>/dev/null; do
        wait "$1" || true
    done
    wait "$1"
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
