#!/usr/bin/env bash
# One call that verifies every CUDA path on a machine with a GPU (docs/README.md "Benchmarks"):
#   1. pytest -m gpu      AMP + channels_last training, the torch generator on CUDA,
#                         onnxruntime's CUDA provider (when onnxruntime-gpu is installed),
#                         NCCL with one process under torchrun, mix on CUDA
#   2. train_step.py      the GPU preset (resnet18_cifar, batch 100, AMP), fewer rounds, and
#                         224 px (timm resnet50, batch 32): SAMix^P read sizes, teacher recipe
#   3. generator_throughput.py   torch eager / onnxruntime / CUDA at 32 and 224 px, short timings
#   4. mix_throughput.py  --device cuda at a reduced image count
# then prints one summary table. Sized to finish in about 8 minutes; each step has its own
# time limit, and a step that fails or times out is reported, not fatal.
#
#   bash benchmarks/gpu_check.sh              # run (from the repository root or anywhere)
#   bash benchmarks/gpu_check.sh --dry-run    # print the commands only
#   PYTHON=.venv/bin/python OUT=/tmp/gpu bash benchmarks/gpu_check.sh
set -uo pipefail

DRY=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $arg (--dry-run, --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.." || exit 2
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
OUT="${OUT:-benchmarks/results/gpu_check}"
DATA_NPZ="../shared/data/cifar10_subset_4k_1k.npz"
if [ -f "$DATA_NPZ" ]; then MIX_DATA="npz:$DATA_NPZ"; else MIX_DATA="digits"; fi

# name | time limit (s) | command
STEPS=(
    "pytest-gpu|200|$PYTHON -m pytest -q -p no:cacheprovider -m gpu tests/"
    "train-step|80|$PYTHON benchmarks/train_step.py --device cuda --steps 10 --warmup 3 --out $OUT --tag train_step_gpu_check"
    "train-step-big|60|$PYTHON benchmarks/train_step.py --device cuda --backbone resnet50 --image-size 224 --batch-size 32 --steps 10 --warmup 3 --methods vanilla,samix-p@1,samix-p@0.5,samix-p,teacher --out $OUT --tag train_step_big_gpu_check"
    "generator-throughput|50|$PYTHON benchmarks/generator_throughput.py --setups 32:resnet18_cifar,224:resnet18 --seconds 1 --out $OUT"
    "mix-throughput|80|$PYTHON benchmarks/mix_throughput.py --device cuda --data $MIX_DATA --num 2000 --mixup-num 4000 --out $OUT"
)

if [ "$DRY" -eq 1 ]; then
    for step in "${STEPS[@]}"; do
        IFS='|' read -r name limit cmd <<< "$step"
        echo "[$name] timeout $limit $cmd"
    done
    exit 0
fi

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check.sh: no CUDA device visible to $PYTHON; nothing to check" >&2
    exit 3
fi
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
"$PYTHON" -c 'import torch; print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'

rows=()
failed=0
for step in "${STEPS[@]}"; do
    IFS='|' read -r name limit cmd <<< "$step"
    echo "=== [$name] $cmd" >&2
    start=$(date +%s)
    timeout "$limit" $cmd > "$OUT/$name.log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    case $rc in
        0) status="ok" ;;
        124) status="TIMEOUT"; failed=1 ;;
        *) status="FAIL($rc)"; failed=1 ;;
    esac
    last=$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c1-70)
    rows+=("| $name | $status | $secs | $last |")
done

echo
echo "| step | status | seconds | last line of its log ($OUT/STEP.log) |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit "$failed"
