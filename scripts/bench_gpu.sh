#!/usr/bin/env bash
# The GPU measurements of docs/performance.md in one go (about 5-8 minutes on one H100):
#
#   scripts/bench_gpu.sh [OUT_DIR]          # default OUT_DIR: results/bench_gpu
#
# 1. PVGG16 and PEfficientNetB0 at 224 px, T = 10, on the largest power-of-two batch that the
#    fp32 reference loop fits on the card: the reference loop, the fp32 engine, the fast path
#    (bf16 autocast + channels_last + cuDNN autotuning) and the plain backbone both ways.
# 2. Top-1 per timestep of efficientnet_lite0 (its packaged ImageNet weights) on the 1000-image
#    sample, fp32 vs the fast path, with the time spent waiting for data.
# 3. One train-feedback epoch on the sample's decoders half under torchrun (NGPU processes,
#    default 1): samples/s and the time waiting for data, as train-feedback prints them.
# Every bench table has GFLOP per image-timestep and GFLOP/s against a measured matmul peak (bf16
# for the fast modes): the roofline of the dynamics on the card.
#
# Each step writes bench.csv / table.md into OUT_DIR/<step>/; the tables are printed at the end.
# Environment: PCNETS (the command; default .venv/bin/pcnets, else python -m pcnets),
# PCNETS_DATA_DIR (the folder holding imagenet-sample), DECODERS (a lite0 decoder file for step 2;
# default: the untrained decoders, which still compare the numerics), COMPILE=1 (also time
# torch.compile of the decoder step), and for a dry run on a CPU: DEVICE=cpu BATCH=2 SIZE=64 T=2
# REPEATS=1 LIMIT=20 TRAIN_IMAGES=16.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-results/bench_gpu}
if [[ -n "${PCNETS:-}" ]]; then read -r -a CMD <<<"$PCNETS"
elif [[ -x .venv/bin/pcnets ]]; then CMD=(.venv/bin/pcnets)
else CMD=(python -m pcnets); fi
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-auto}
SIZE=${SIZE:-224}
T=${T:-10}
REPEATS=${REPEATS:-3}
LIMIT=${LIMIT:-null}
export PCNETS_DATA_DIR=${PCNETS_DATA_DIR:-$( [[ -d ../shared/data ]] && echo ../shared/data || echo data)}
EXTRA=()
[[ "${COMPILE:-0}" == 1 ]] && EXTRA+=(--compile)

mkdir -p "$OUT"
(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv) || true
"${CMD[@]}" info

for backbone in vgg16 efficientnet_b0; do
    echo "== $backbone: batch $BATCH, $SIZE px, T = $T"
    "${CMD[@]}" bench "backbone=$backbone" --device "$DEVICE" --batch "$BATCH" --size "$SIZE" \
        --timesteps "$T" --repeats "$REPEATS" --fast "${EXTRA[@]}" --out "$OUT/$backbone"
done

if [[ -d "$PCNETS_DATA_DIR/imagenet-sample/val" ]]; then
    echo "== efficientnet_lite0: top-1 per timestep on the sample, fp32 vs the fast path"
    DEC=()
    [[ -n "${DECODERS:-}" ]] && DEC=("pc.decoders=$DECODERS")
    "${CMD[@]}" bench backbone=efficientnet_lite0 --device "$DEVICE" --pretrained --accuracy \
        --batch "$([[ $BATCH == auto ]] && echo 64 || echo "$BATCH")" --size 224 --timesteps "$T" \
        --repeats 1 --modes engine,engine_fast "${EXTRA[@]}" --out "$OUT/lite0_accuracy" \
        "data.limit=$LIMIT" data.batch_size=100 "${DEC[@]}"
else
    echo "== no ImageNet sample under $PCNETS_DATA_DIR: skipping the top-1 comparison"
fi

if [[ -d "$PCNETS_DATA_DIR/imagenet-sample/val" ]]; then
    echo "== one train-feedback epoch (PEfficientNetB0's RMSprop recipe) on the sample's decoders half under torchrun"
    TORCHRUN=(.venv/bin/torchrun); [[ -x .venv/bin/torchrun ]] || TORCHRUN=(python -m torch.distributed.run)
    "${TORCHRUN[@]}" --nproc_per_node="${NGPU:-1}" -m pcnets train-feedback backbone=efficientnet_lite0 \
        data=imagenet_sample data.split=decoders train=peffb0 train.epochs=1 device="$DEVICE" \
        "train.max_images=${TRAIN_IMAGES:-null}" "train.val_max=${TRAIN_IMAGES:-10000}" \
        --out "$OUT/train_torchrun" | tail -n 20
fi

for table in "$OUT"/*/table.md; do
    echo; echo "### $table"; cat "$table"
done
