#!/usr/bin/env bash
# The last job of a wave release (.github/workflows/waves.yml): `bgkit waves summary`, the wave
# release's own record (notebook and HTML page) from the targets' records, and exits with bgkit's
# exit code: 0 every target promoted, 3 the waves stopped at a rollback, 4 at a failure or a
# missing record (a target cancelled, or that never ran), 2 bad command line.
#
#   MANIFEST  the manifest's path in the repository: a .yaml or .yml file under releases/ or
#             examples/waves/
#   RECORDS   the folder holding the targets' records, the downloaded artifacts (default records)
#   OUTPUT    the folder for the summary record (default outputs)
#   BGKIT     the bgkit executable (default: bgkit on PATH)
#
# Anything malformed is refused with exit 2 before bgkit starts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ci_common.sh" # refuse, check_manifest_path, summarized_bgkit

manifest=${MANIFEST:-}
records=${RECORDS:-records}
output=${OUTPUT:-outputs}
check_manifest_path "$manifest"
for folder in "$records" "$output"; do
    [[ $folder =~ ^[A-Za-z0-9_./-]+$ && $folder != -* ]] ||
        refuse "folder ${folder@Q}: expected a folder such as records or outputs"
done

# No artifact at all (every target of the first wave failed before bgkit started) is still a
# summary: bgkit reports each target's record as missing.
mkdir -p "$records"
summarized_bgkit "wave release $manifest" waves summary "$manifest" --records "$records" --output "$output"
