#!/usr/bin/env bash
# Install offline, then run the GPU check (benchmarks/GPU.md).
#
#   bash benchmarks/gpu_check.sh [gpu_check.py options]   # from anywhere; results in $OUT (else ./gpu_check_out)
#   bash benchmarks/gpu_check.sh --install-only           # install and show the plugins, no check
#
# 1. the wheels in .whl/ (pydantic and the rest the machine lacks), if any, into $SITE;
# 2. this project and its two plugins (plugins/pixelcnn-imagefolder, plugins/pixelcnn-classic),
#    built from this tree without network or build isolation, into $TARGET: a real install,
#    so their entry points (the plugin registries) are found;
# 3. benchmarks/gpu_check.py --out $OUT/gpu_check.json, its output also in $OUT/gpu_check.out.
# Exit status: gpu_check.py's (1 when a step failed), or 2 when the install failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
py="${PYTHON:-python3}"
site="${SITE:-/tmp/gpu_check_site}"
target="${TARGET:-/tmp/gpu_check_pc}"
out="${OUT:-$PWD/gpu_check_out}"
quiet=(-q --no-index --no-deps --no-compile --no-cache-dir --upgrade)

if compgen -G ".whl/*.whl" >/dev/null; then
    "$py" -m pip install "${quiet[@]}" --target "$site" .whl/*.whl || { echo "gpu_check.sh: installing .whl/ failed" >&2; exit 2; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$py" -m pip install "${quiet[@]}" --no-build-isolation --target "$target" . plugins/pixelcnn-imagefolder plugins/pixelcnn-classic \
    || { echo "gpu_check.sh: installing the project failed" >&2; exit 2; }
export PYTHONPATH="$target:$PYTHONPATH" PYTHONUNBUFFERED=1
"$py" -m pixelcnn_cli plugins || exit 2
if [ "${1:-}" = "--install-only" ]; then
    exit 0
fi
mkdir -p "$out"
"$py" benchmarks/gpu_check.py --out "$out/gpu_check.json" "$@" 2>&1 | tee "$out/gpu_check.out"
exit "${PIPESTATUS[0]}"
