#!/usr/bin/env bash
# The checks that need a GPU, in one short run (CI has no GPU; docs/ops.md and docs/performance.md quote
# what this printed on the machine they name). Run from the repository root with voxuda, its plugins and
# the test extra importable:
#
#     bash benchmarks/gpu_check.sh OUT_FOLDER
#
# 1. the GPU-marked tests (the cupy kernel against the torch backend, training on CUDA and evaluating on
#    the CPU, segmenting on CUDA against the CPU);
# 2. the bilateral benchmark with the cupy backend beside the torch backend on the same GPU;
# 3. the whole test suite where device "auto" resolves to CUDA (what a user with a GPU runs);
# 4. the README's main job (the quick suite) on the GPU, timed.
# Each step has its own time limit so that one hang does not cost the others; logs go to OUT_FOLDER.
set -uo pipefail
OUT="${1:?usage: bash benchmarks/gpu_check.sh OUT_FOLDER}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 VOXUDA_STRICT_PLUGINS=1
step() { echo "== $1 ($(date -u +%T))"; }

step environment
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
    python3 -c "import cupy; print('cupy', cupy.__version__)"
    python3 -c "import voxuda.ops as ops; print([(s.name, s.available, s.reason) for s in ops.available_backends()])"
    nproc
} 2>&1 | tee "$OUT/environment.txt"

step "GPU tests"
timeout 200 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests 2>&1 | tee "$OUT/gpu_tests.log"

step "bilateral benchmark"
timeout 200 python3 benchmarks/bench_bilateral.py --size 128 --threads "$(nproc)" --rounds 7 --radii 2 3 --ibf \
    --json "$OUT/bilateral_gpu.json" 2>&1 | tee "$OUT/bilateral_gpu.log"

step "whole suite, device auto = cuda"
timeout 240 python3 -m pytest -q -p no:cacheprovider -n 12 -rfE tests plugins > "$OUT/suite.log" 2>&1
echo "suite exit $?"; tail -40 "$OUT/suite.log"

step "README main job on the GPU"
start=$(date +%s)
timeout 150 python3 -m voxuda benchmark --suite quick --out /tmp/voxuda_quick > "$OUT/quick.log" 2>&1
echo "quick suite exit $? after $(( $(date +%s) - start )) s"; tail -25 "$OUT/quick.log"
step done
