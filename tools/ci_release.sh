#!/usr/bin/env bash
# One release from CI: .github/workflows/release.yml calls this with the dispatch inputs in the
# environment; it builds the `bgkit run` command line and exits with bgkit's exit code
# (0 promoted, 3 rolled back, 4 failed, 2 bad command line).
#
#   RUNBOOK       runbook name (default alb_weighted)
#   TARGET        sandbox | aws (default sandbox)
#   REGION        AWS region (default: the runbook's)
#   RELEASE       release id (default: gh-<run id>-<attempt> in GitHub Actions, else bgkit's)
#   AUTO_PROMOTE  true | false | "" (default "": the runbook's own default)
#   PARAMETERS    more runbook parameters: name=value words separated by spaces or newlines;
#                 a value cannot contain whitespace. Example: "plan=canary bake_seconds=60"
#   OUTPUT        optional --output (a .ipynb path, a folder or an s3://bucket/prefix/)
#   HTML          1 (default): also write the reviewer's HTML page (--html); 0: not
#   BGKIT         the bgkit executable (default: bgkit on PATH)
#
# A secret such as smoke_token never goes through PARAMETERS (workflow inputs are visible in
# the run's logs and event): bgkit reads it from BGKIT_SECRET_SMOKE_TOKEN itself.
# Anything malformed is refused with exit 2 before bgkit starts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ci_common.sh" # refuse, summarized_bgkit

runbook=${RUNBOOK:-alb_weighted}
target=${TARGET:-sandbox}
release=${RELEASE:-}
if [[ -z $release && -n ${GITHUB_RUN_ID:-} ]]; then
    release="gh-${GITHUB_RUN_ID}-${GITHUB_RUN_ATTEMPT:-1}" # the record's name leads to the run
fi

# A name, not a path: a dispatch must not run an arbitrary notebook.
[[ $runbook =~ ^[a-z][a-z0-9_]*$ ]] || refuse "RUNBOOK ${runbook@Q}: expected a runbook name such as alb_weighted"
[[ $target == sandbox || $target == aws ]] || refuse "TARGET ${target@Q}: expected sandbox or aws"

args=(run "$runbook" -p target "$target")
[[ -z ${REGION:-} ]] || args+=(-p region "$REGION")
[[ -z $release ]] || args+=(-p release "$release")
case ${AUTO_PROMOTE:-} in
    "") ;;
    true | false) args+=(-p auto_promote "$AUTO_PROMOTE") ;;
    *) refuse "AUTO_PROMOTE ${AUTO_PROMOTE@Q}: expected true or false" ;;
esac

# Split on whitespace only: `read -a` does no globbing and no expansion of the words.
IFS=$' \t\r\n' read -r -d '' -a words <<<"${PARAMETERS:-}" || true
declare -A seen=()
for word in "${words[@]}"; do
    [[ $word =~ ^([a-z][a-z0-9_]*)=(.*)$ ]] ||
        refuse "PARAMETERS: ${word@Q} is not name=value (name=value words separated by spaces or newlines, e.g. plan=canary bake_seconds=60)"
    name=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
    case $name in
        # These have inputs of their own: the target decides which credentials the job has.
        target | region | release | auto_promote)
            refuse "PARAMETERS: $name has an input of its own (${name^^} here); not in PARAMETERS" ;;
    esac
    [[ -z ${seen[$name]:-} ]] || refuse "PARAMETERS: $name is given twice"
    seen[$name]=1
    args+=(-p "$name" "$value")
done

[[ -z ${OUTPUT:-} ]] || args+=(--output "$OUTPUT")
case ${HTML:-1} in
    1) args+=(--html) ;;
    0) ;;
    *) refuse "HTML ${HTML@Q}: expected 1 or 0" ;;
esac
args+=(--quiet)

# bgkit's stdout (outcome, reason, record path) also goes to the job's summary page; the
# script exits with bgkit's exit code.
summarized_bgkit "$runbook on $target" "${args[@]}"
