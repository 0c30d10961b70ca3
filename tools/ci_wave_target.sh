#!/usr/bin/env bash
# One target of one wave of a wave release (.github/workflows/wave.yml runs it in each matrix
# job): `bgkit waves target MANIFEST TARGET`, which runs that target's release as `bgkit run`
# does (the manifest's runbook and parameters, release id <release>.<target>, --html), and
# exits with bgkit's exit code (0 promoted, 3 rolled back, 4 failed, 2 bad command line).
#
#   MANIFEST  the manifest's path in the repository: a .yaml or .yml file under releases/ or
#             examples/waves/
#   TARGET    the target's name in the manifest (the wave's matrix gives it)
#   OUTPUT    optional --output folder for the record (default: bgkit's, outputs/)
#   BGKIT     the bgkit executable (default: bgkit on PATH)
#
# A secret parameter the manifest lists (smoke_token) comes from BGKIT_SECRET_<NAME> in the
# environment, read by bgkit itself. Anything malformed is refused with exit 2 before bgkit starts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ci_common.sh" # refuse, check_manifest_path, summarized_bgkit

manifest=${MANIFEST:-}
target=${TARGET:-}
check_manifest_path "$manifest"
# A target name as the manifest allows it (bgkit.waves.manifest.TARGET_NAME).
[[ $target =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$ ]] ||
    refuse "TARGET ${target@Q}: expected a target name of the manifest (1-40 letters, digits, '_' or '-')"

args=(waves target "$manifest" "$target")
[[ -z ${OUTPUT:-} ]] || args+=(--output "$OUTPUT")
summarized_bgkit "$target ($manifest)" "${args[@]}"
