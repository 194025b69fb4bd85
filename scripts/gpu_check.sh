#!/usr/bin/env bash
# GPU check for engine core: the differential tests on device "cuda" (pytest -m gpu, cupy
# backed, torch as oracle; with the autocast and fused-kernel tests), the core benchmark with
# --device cuda and the training-step benchmark (bench/engine_gpu.py, fp32 and mixed precision).
#
#   scripts/gpu_check.sh            # on a machine with an NVIDIA GPU, cupy and torch
#   PYTHON=python3.12 scripts/gpu_check.sh
#
# --confcutdir keeps pytest to tests/engine's fixtures (the service fixtures in
# tests/conftest.py need Postgres/Redis packages a GPU box may not have).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG_DIR=${OUT:-${TMPDIR:-/tmp}}
export PYTHONUNBUFFERED=1
$PY - <<'PY'
import cupy, numpy, torch
print("cupy", cupy.__version__, "numpy", numpy.__version__, "torch", torch.__version__,
      "gpus", cupy.cuda.runtime.getDeviceCount(),
      cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
PY
# GPU_TEST_TIMEOUT=seconds bounds the test run (the bench still runs afterwards).
${GPU_TEST_TIMEOUT:+timeout "$GPU_TEST_TIMEOUT"} $PY -m pytest -q -m gpu tests/engine --confcutdir=tests/engine -p no:cacheprovider \
    -o addopts="--import-mode=importlib -ra" --junitxml="$LOG_DIR/gpu_junit.xml" 2>&1 \
    | tee "$LOG_DIR/gpu_pytest.log" | grep -v "^SKIPPED" | tail -60
rc=${PIPESTATUS[0]}
$PY bench/engine_core.py --device cuda --repeat 3 --json "$LOG_DIR/bench_cuda.json" \
    2>&1 | tee "$LOG_DIR/bench_cuda.log"
$PY bench/distributed.py --device cuda --repeat 3 --json "$LOG_DIR/bench_distributed_cuda.json" \
    2>&1 | tee "$LOG_DIR/bench_distributed_cuda.log"
# Whole training steps on the GPU, engine vs torch CUDA, fp32 and 16-mixed, each side in its own
# process (ResNet-18 3x32x32 b256, TransformerEncoder d128 b256, LSTM h256 b256): bench/README.md.
$PY bench/engine_gpu.py --json "$LOG_DIR/bench_engine_gpu.json" 2>&1 | tee "$LOG_DIR/bench_engine_gpu.log"
# The worker's training loop on the GPU (TRAINYARD_DEVICE=cuda, SQLite): training, exact
# resume from checkpoints, schedulers. GPU_WHEELS names a folder of wheels for the service
# packages (sqlalchemy, alembic, pydantic-settings) where the GPU machine lacks them.
if [ -n "${GPU_WHEELS:-}" ]; then
    $PY -m pip install -q --no-index --find-links "$GPU_WHEELS" --target /tmp/trainyard-deps \
        sqlalchemy alembic pydantic pydantic-settings && export PYTHONPATH=/tmp/trainyard-deps
fi
if $PY -c "import sqlalchemy, alembic, pydantic_settings" 2>/dev/null; then
    TRAINYARD_DEVICE=cuda $PY -m pytest -q tests/worker/test_training.py tests/worker/test_resume.py \
        tests/worker/test_schedules.py tests/worker/test_precision.py -p no:cacheprovider -o addopts="--import-mode=importlib -rfE" 2>&1 \
        | tee "$LOG_DIR/gpu_worker.log" | tail -15
    [ "${PIPESTATUS[0]}" = 0 ] || rc=1
else
    echo "worker GPU check skipped: sqlalchemy/alembic/pydantic-settings not importable (set GPU_WHEELS)"
fi
exit "$rc"
