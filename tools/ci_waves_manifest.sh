#!/usr/bin/env bash
# The first job of a wave release (.github/workflows/waves.yml): checks the manifest with bgkit
# (`bgkit waves check`), refuses one with more waves than the workflow has wave jobs, and writes
# what the wave jobs need to $GITHUB_OUTPUT (to stdout outside GitHub Actions), one key=value a line:
#
#   name, release          the manifest's (the release names the summary's artifact)
#   waves                  how many waves (1 to MAX_WAVES)
#   max_parallel           targets of one wave at once
#   bake_seconds           the bake between two waves
#   matrix_1 … matrix_<MAX_WAVES>   each wave's {"include": [...]} for strategy.matrix (fromJSON),
#                          empty for a wave the manifest does not have
#
#   MANIFEST   the manifest's path in the repository: a .yaml or .yml file under releases/ or
#              examples/waves/
#   MAX_WAVES  how many wave jobs the workflow has (default 6)
#   BGKIT      the bgkit executable (default: bgkit on PATH)
#
# Exit 0, or 2 for a manifest refused (bgkit's message names the entry) or malformed input.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ci_common.sh" # refuse, check_manifest_path, check_bake_seconds

manifest=${MANIFEST:-}
check_manifest_path "$manifest"
max_waves=${MAX_WAVES:-6}
[[ $max_waves =~ ^[1-9][0-9]?$ ]] || refuse "MAX_WAVES ${max_waves@Q}: expected the number of wave jobs, 1 to 99"
bgkit=${BGKIT:-bgkit}

# Exit 2 with `bgkit: <file>: <entry>: <problem>` on stderr for a manifest that cannot run.
"$bgkit" waves check "$manifest"

# `bgkit waves info` and `bgkit waves matrix` print one line of JSON each, read by python3.
info=$("$bgkit" waves info "$manifest")
fields=$(python3 -c '
import json, sys
info = json.loads(sys.argv[1])
bake = info["bake_between_waves_seconds"]
print(info["waves"], info["max_parallel"], format(bake, "g"), info["name"], info["release"])
' "$info" 2>/dev/null) ||
    refuse "bgkit waves info printed ${info@Q}: expected one line of JSON with waves, max_parallel, bake_between_waves_seconds, name and release"
read -r waves max_parallel bake_seconds name release <<<"$fields"

[[ $waves =~ ^[1-9][0-9]*$ ]] || refuse "bgkit waves info: waves ${waves@Q} is not a number of waves"
((waves <= max_waves)) ||
    refuse "$manifest has $waves waves; this workflow runs at most $max_waves (its jobs wave-1 to wave-$max_waves): put the later waves in a second manifest, released after this one, or add wave jobs to .github/workflows/waves.yml"
[[ $max_parallel =~ ^[1-9][0-9]*$ ]] || refuse "bgkit waves info: max_parallel ${max_parallel@Q} is not a number of targets"
check_bake_seconds "$bake_seconds"
for id in "$name" "$release"; do
    [[ $id =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || refuse "bgkit waves info: ${id@Q} is not a name or release id"
done

# One matrix per wave, checked: one line (a $GITHUB_OUTPUT value), an object with targets.
declare -a matrices=() plan=()
for ((n = 1; n <= waves; n++)); do
    matrix=$("$bgkit" waves matrix "$manifest" --wave "$n")
    if [[ $matrix == *$'\n'* ]] || ! targets=$(python3 -c '
import json, sys
include = json.loads(sys.argv[1])["include"]
assert include and all(isinstance(entry["target"], str) for entry in include)
print(", ".join(entry["target"] for entry in include))
' "$matrix" 2>/dev/null); then
        refuse "bgkit waves matrix --wave $n printed ${matrix@Q}: expected one line of JSON, {\"include\": [{\"target\": ...}, ...]}"
    fi
    matrices[n]=$matrix
    plan[n]=$targets
done

if [[ -n ${GITHUB_OUTPUT:-} ]]; then
    exec 3>>"$GITHUB_OUTPUT"
else
    exec 3>&1
fi
printf 'name=%s\nrelease=%s\nwaves=%s\nmax_parallel=%s\nbake_seconds=%s\n' \
    "$name" "$release" "$waves" "$max_parallel" "$bake_seconds" >&3
for ((n = 1; n <= max_waves; n++)); do
    printf 'matrix_%s=%s\n' "$n" "${matrices[n]:-}" >&3
done

if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then
    {
        printf '### %s %s (%s): %s waves, at most %s targets at once, %s s between waves\n\n' \
            "$name" "$release" "$manifest" "$waves" "$max_parallel" "$bake_seconds"
        printf '| wave | targets |\n|---|---|\n'
        for ((n = 1; n <= waves; n++)); do
            printf '| %s | %s |\n' "$n" "${plan[n]}"
        done
    } >>"$GITHUB_STEP_SUMMARY"
fi
