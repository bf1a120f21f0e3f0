#!/usr/bin/env bash
# The GPU runbook: the equal-time table on a machine with one CUDA GPU, within about 10 minutes of device time.
#
#   bash benchmarks/gpu_table.sh [OUT] [more overrides for every run ...]     # default OUT: docs/results/gpu-equal_time
#
# Runs every family of the registry for MINUTES training minutes (default 1) at seed 0
# (SEEDS="0 1 2" for more) with hardware=gpu, through benchmarks/equal_time.py: the same
# budget=equal_time protocol as the CPU table (same n scored, same curve moments up to
# MINUTES), each record copied into OUT/runs/ beside nothing else, so the report keeps the
# GPU apart from the CPU by the device name in each record:
#   python -m genzoo.report OUT/runs --out OUT
# The run directories (checkpoints) go to outputs/equal_time/. It refuses to start, with
# one line and exit status 2, where no CUDA GPU is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/results/gpu-equal_time}
shift || true
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_table.sh: no CUDA GPU is visible here (torch cannot be imported, or torch.cuda.is_available() is False): run it on a machine with one GPU, or run the CPU table with python benchmarks/equal_time.py --out docs/results/cpu-equal_time" >&2
  exit 2
fi
python -c "import torch; print('gpu_table.sh: on', torch.cuda.get_device_name(0), 'with torch', torch.__version__)"
# shellcheck disable=SC2086
exec python benchmarks/equal_time.py --hardware gpu --minutes "${MINUTES:-1}" --seeds ${SEEDS:-0} --extend 0 --out "$out" --extra "$@"
