#!/usr/bin/env bash
# The paper's whole pipeline for one model, stage by stage, on every GPU present (torchrun).
#   scripts/reproduce.sh pvgg16|peffb0      (make reproduce-pvgg16 IMAGENET=... IMAGENET_C=...)
# Each stage writes its own run folder under $OUT and resumes when rerun: finished stages and
# finished cells inside a stage are skipped. SMOKE=1 runs the same stages at tiny scale with random
# weights on a synthetic ImageNet-like folder (what CI checks).
set -euo pipefail
model=${1:?usage: reproduce.sh pvgg16|peffb0}
case "$model" in
  pvgg16 | peffb0) ;;
  *) echo "error: unknown model '$model'; use pvgg16 or peffb0" >&2; exit 2 ;;
esac
PCNETS=${PCNETS:-.venv/bin/pcnets}
OUT=${OUT:-results/reproduce/$model}
NGPU=${NGPU:-$( (command -v nvidia-smi >/dev/null && nvidia-smi -L | wc -l) || echo 0)}

if [ "${SMOKE:-0}" = 1 ]; then
  OUT=${OUT%/}-smoke
  IMAGENET="$OUT/tiny-imagenet"
  IMAGENET_C="$OUT/tiny-imagenet-c"
  .venv/bin/python scripts/make_tiny_imagenet.py "$IMAGENET"
  $PCNETS make-imagenet-c --val-root "$IMAGENET/val" --out "$IMAGENET_C" --severities 1,3 \
    --workers 0 --size 64
  SCALE=(backbone.pretrained=false data.num_classes=2 data.batch_size=4 "backbone.transform={resize:32,crop:32}" pc.timesteps=1 device=cpu)
  # Each command composes only its own groups, so each stage gets only its own keys.
  TRAIN=(train.epochs=1)
  EVAL=(eval.sigmas=[0,0.5])
  CORRUPT=(eval.sigmas=[0,0.5] corruptions.severities=[1,3] "corruptions.names=[gaussian_noise,fog]")
  ATTACK=(attack.eps=[0.01,0.05] attack.timesteps=[0,1] attack.num_images=2 attack.select=any attack.steps=2
    attack.checks.num_images=1 attack.queries=20 attack.allow_suspect=true)
  TUNE=(tune.steps=1 tune.batch_size=2)
  MANIFOLD=(manifold.sigmas=[0.5] manifold.timesteps=1 manifold.n_resamples=50)
else
  : "${IMAGENET:?set IMAGENET=/path/to/imagenet (train/ and val/ in ImageFolder layout)}"
  : "${IMAGENET_C:?set IMAGENET_C=/path/to/imagenet-c (<corruption>/<severity>/<wnid>/<image>)}"
  SCALE=()
  TRAIN=()
  EVAL=()
  CORRUPT=()
  ATTACK=()
  TUNE=()
  MANIFOLD=()
fi

if [ "${NGPU:-0}" -gt 1 ]; then
  RUN=(.venv/bin/torchrun --nproc_per_node="$NGPU" -m pcnets)
else
  RUN=("$PCNETS")
fi

BASE=(experiment="$model" data.root="$IMAGENET" "${SCALE[@]}")
DEC="pc.decoders=$OUT/train-feedback/decoders.pt"
set -x
"${RUN[@]}" train-feedback "${BASE[@]}" "${TRAIN[@]}" --out "$OUT/train-feedback"
"${RUN[@]}" eval-noise "${BASE[@]}" "$DEC" "${EVAL[@]}" --out "$OUT/eval-noise"
"${RUN[@]}" eval-corruptions "${BASE[@]}" "$DEC" "${CORRUPT[@]}" corruptions=folder \
  corruptions.root="$IMAGENET_C" --out "$OUT/eval-corruptions"
"${RUN[@]}" attack "${BASE[@]}" "$DEC" "${ATTACK[@]}" --out "$OUT/attack"
"${RUN[@]}" tune "${BASE[@]}" "$DEC" "${TUNE[@]}" --out "$OUT/tune"
"${RUN[@]}" manifold "${BASE[@]}" "$DEC" "${MANIFOLD[@]}" --out "$OUT/manifold"
"$PCNETS" report "$OUT/train-feedback" "$OUT/eval-noise" "$OUT/eval-corruptions" "$OUT/attack" \
  "$OUT/tune" "$OUT/manifold" --out "$OUT/REPORT.md"
