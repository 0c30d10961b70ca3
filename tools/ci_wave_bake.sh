#!/usr/bin/env bash
# The bake between two waves of a wave release (.github/workflows/wave.yml, before a wave's
# targets): waits BAKE_SECONDS after the previous wave was promoted, so that a problem it
# caused shows before the next wave spreads it. Wave 1 does not wait.
#
#   WAVE          this wave's number, 1 or more
#   BAKE_SECONDS  seconds to wait (the manifest's bake_between_waves_seconds), under 18000
#
# Anything malformed is refused with exit 2 before waiting.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ci_common.sh" # refuse, check_bake_seconds

wave=${WAVE:-}
seconds=${BAKE_SECONDS:-}
[[ $wave =~ ^[1-9][0-9]*$ ]] || refuse "WAVE ${wave@Q}: expected a wave number, 1 or more"
check_bake_seconds "$seconds"
if ((wave == 1)); then
    echo "wave 1: no bake before the first wave"
    exit 0
fi
echo "wave $wave: baking $seconds s after wave $((wave - 1)) was promoted"
sleep "$seconds"
echo "wave $wave: bake done"
