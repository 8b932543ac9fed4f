#!/usr/bin/env bash
# The GPU check in one call (benchmarks/gpu_check.py): on a machine without CUDA, one line and
# exit 0; on a GPU, the figures in benchmarks/results/gpu_check.json within 8 minutes.
#   bash benchmarks/gpu_check.sh [gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec timeout --signal=TERM --kill-after=20 480 env PATH="$(dirname "$PYTHON"):$PATH" "$PYTHON" benchmarks/gpu_check.py "$@"
