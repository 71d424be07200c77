#!/usr/bin/env bash
# `make demo`: the paper's whole pipeline on PEfficientNet-Lite0 (real ImageNet weights, offline)
# and the 1000-image ImageNet sample, sized for a 2-core CPU (CUDA is used when present).
# Decoders train on the sample's `decoders` half; everything else runs on its `eval` half.
# Each stage is a run folder under results/demo/ and resumes when rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PCNETS=${PCNETS:-.venv/bin/pcnets}
OUT=${OUT:-results/demo}
N=${DEMO_IMAGES:-50}         # eval images per stage (the eval half has 485)
T=${DEMO_TIMESTEPS:-5}       # timesteps 0..T (the paper: 10)
# Lite0 normalises with std 0.5, so sigma >= 1 in normalised space leaves ~0% accuracy: skipped.
SIGMAS=${DEMO_SIGMAS:-eval.sigmas=[0,0.25,0.5,0.75]}
NET=(backbone=efficientnet_lite0 data=imagenet_sample)
EVAL=(data.split=eval "data.limit=$N" "pc.decoders=$OUT/train-feedback/decoders.pt")
# A fresh clone holds the committed demo run: start afresh then. Anything else (an interrupted
# or finished run of yours) is resumed: finished stages and cells are skipped.
if git ls-files --error-unmatch "$OUT/REPORT.md" >/dev/null 2>&1 &&
  [ -z "$(git status --porcelain -- "$OUT")" ]; then
  echo "$OUT holds the committed demo run: starting afresh (rerun to resume if interrupted)"
  rm -rf "$OUT"
fi
start=$(date +%s)
stage() { echo; echo "== $1 ($(( $(date +%s) - start )) s so far)"; }

stage "1/7 train the feedback decoders (decoders half of the sample)"
"$PCNETS" train-feedback "${NET[@]}" data.train_split=decoders train=demo --out "$OUT/train-feedback"

stage "2/7 Gaussian noise, the paper's alpha as is"
"$PCNETS" eval-noise "${NET[@]}" "${EVAL[@]}" "$SIGMAS" --timesteps "$T" --out "$OUT/eval-noise"

stage "3/7 Gaussian noise, with the reference code's gradient scaling"
"$PCNETS" eval-noise "${NET[@]}" "${EVAL[@]}" "$SIGMAS" pc.gradient_scaling=true --timesteps "$T" \
  --out "$OUT/eval-noise-scaled"

stage "4/7 the 19 corruptions, generated on the fly"
"$PCNETS" eval-corruptions "${NET[@]}" "${EVAL[@]}" "data.limit=${DEMO_CORRUPTION_IMAGES:-16}" \
  "corruptions.severities=${DEMO_SEVERITIES:-[3]}" --timesteps "$T" --out "$OUT/eval-corruptions"

# DEMO_ALSO_ATTACKS=[apgd,square] adds the gradient-free masking check (Square, DEMO_SQUARE_QUERIES
# queries per image), at several times the stage's CPU time.
stage "5/7 attacks through the unrolled dynamics: BIM (the paper's) and APGD beside it"
"$PCNETS" attack "${NET[@]}" "${EVAL[@]}" attack=bim "attack.also=${DEMO_ALSO_ATTACKS:-[apgd]}" \
  "attack.queries=${DEMO_SQUARE_QUERIES:-100}" "attack.num_images=${DEMO_ATTACK_IMAGES:-4}" \
  attack.checks.num_images=2 attack.timesteps=[0,2,4] --eps 0.001,0.002,0.004,0.008 --out "$OUT/attack"

stage "6/7 convergence to clean representations"
"$PCNETS" manifold "${NET[@]}" "${EVAL[@]}" "data.limit=${DEMO_MANIFOLD_IMAGES:-16}" \
  manifold.timesteps=10 --out "$OUT/manifold"

stage "7/7 the report"
"$PCNETS" report "$OUT/train-feedback" "$OUT/eval-noise" "$OUT/eval-noise-scaled" \
  "$OUT/eval-corruptions" "$OUT/attack" "$OUT/manifold" --out "$OUT/REPORT.md"
echo; echo "demo finished in $(( $(date +%s) - start )) s: $OUT/REPORT.md"
