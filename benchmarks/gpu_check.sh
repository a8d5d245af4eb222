#!/usr/bin/env bash
# The GPU check: the CUDA-marked tests, then benchmarks/gpu.py's table. Under 8 minutes on one
# H200 (pytest at most 170 s, the benchmark at most 280 s). Run from the repository root:
#     OUT=/some/folder bash benchmarks/gpu_check.sh
# It writes $OUT/gpu_table.md (the table) and $OUT/gpu_check.log (everything printed).
# No pip install of rumpy: the repository goes on PYTHONPATH. Wheels in .whl/ (tomli_w, which
# every run needs to write its config.toml) are installed into a private folder first.
# CPU dry run of the same script: GPU_CHECK_CPU_SMOKE=1 OUT=/tmp/x bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
LOG="$OUT/gpu_check.log"
export PYTHONUNBUFFERED=1
SMOKE="${GPU_CHECK_CPU_SMOKE:-}"

main() {
    local start=$SECONDS
    echo "== rumpy GPU check, $(date -u '+%Y-%m-%d %H:%M:%S') UTC, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    if compgen -G ".whl/*.whl" > /dev/null; then
        local site="${TMPDIR:-/tmp}/rumpy-gpu-check-site"
        "$PY" -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl \
            && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" \
            || echo "WARNING: could not install the wheels in .whl/"
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    "$PY" -c "import tomli_w" 2> /dev/null || echo "WARNING: tomli_w is missing: training runs cannot write config.toml (put its wheel in .whl/)"

    echo "== pytest -m cuda (at most 170 s)"
    local tests_rc
    # cuBLAS is deterministic only with a fixed workspace; other test modules may import
    # packages this machine lacks (aim, lpips, onnx): their collection errors do not stop the run
    CUBLAS_WORKSPACE_CONFIG=:4096:8 timeout -k 10 170 "$PY" -m pytest -q -m cuda tests \
        -p no:cacheprovider --continue-on-collection-errors -rfEs
    tests_rc=$?
    echo "== pytest -m cuda: exit code $tests_rc ($((SECONDS - start)) s so far)"

    echo "== benchmarks/gpu.py (at most 280 s)"
    if [ -n "$SMOKE" ]; then
        timeout -k 10 280 "$PY" benchmarks/gpu.py --cpu-smoke --no-compile --out "$OUT"
    else
        timeout -k 10 280 "$PY" benchmarks/gpu.py --budget 250 --out "$OUT"
    fi
    echo "== benchmarks/gpu.py: exit code $? ($((SECONDS - start)) s in all)"
    echo
    cat "$OUT/gpu_table.md" 2> /dev/null || echo "FAIL: no table was written"
    echo "== CUDA tests exit code: $tests_rc"
}

main 2>&1 | tee "$LOG"
