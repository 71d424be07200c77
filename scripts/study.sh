#!/usr/bin/env bash
# `make study`: the evidence behind the README's findings (issue 22, item 9), on
# PEfficientNet-Lite0 and the ImageNet sample, sized to finish within 60 minutes on a 2-core CPU.
# Measured: 55 minutes on this machine (the costs behind the sizes: ~0.02 s per image and
# timestep, an attack step ~4 forward passes): the paper's grid at T=10 on all 485 eval images
# is 11 minutes of it, so the ablations, tuning, corruptions and attacks run at T=5 (the
# grid's run records every t, so its t=5 is the same setting on 485 images).
# Every stage is a run folder (or a -m sweep folder) under results/study/ and resumes when rerun:
# finished stages and cells are skipped; STAGES="3 9" runs only those stages. SMOKE=1 runs every
# stage at tiny scale (a few images, 1 timestep) in a few minutes: the pipeline holds together.
#
# Noise is given in the paper's units (eval.sigma_unit=reference: N(0, sigma^2) on the
# ImageNet-normalised tensor); each table also states it in Lite0's normalised units (std 0.5)
# and in pixels. Subsets (data.limit) are seeded class-stratified draws, the same in every stage
# with the same limit. Sizes are environment variables (STUDY_*).
set -euo pipefail
cd "$(dirname "$0")/.."
PCNETS=${PCNETS:-.venv/bin/pcnets}
OUT=${OUT:-results/study}
if [ "${SMOKE:-0}" = 1 ]; then
  OUT=${OUT%/}-smoke
  N=4 N_SWEEP=4 N_CORRUPT=4 N_ATTACK=2 N_MANIFOLD=4 T=1 TS=1 TUNE_STEPS=1
  TRAIN=(train.epochs=1 data.limit=24)
  CORRUPTIONS="[gaussian_noise,fog]" ATTACK=(attack.steps=2 attack.queries=10 attack.checks.num_images=1)
  PAPER_SIGMAS="[0,0.5]" SWEEP_SIGMAS="[0,0.5]" BOOT=(eval.bootstrap=50) EPS=0.004
  MAX_IMAGES="8,12" ALPHAS="0.01,100" BM_ALPHAS="0.01,100" REL_ALPHAS="0.001,0.1"
  LAMBDAS="choice(0,[0.1,0,0,0,0,0,0,0])"
else
  N=${STUDY_IMAGES:-485}                 # the paper's sigma grid: the whole eval half (~11 min)
  N_SWEEP=${STUDY_SWEEP_IMAGES:-100}     # each of the 27 jobs of the ablation sweeps (~35 s a job)
  N_CORRUPT=${STUDY_CORRUPTION_IMAGES:-100}  # 19 corruptions at severity 3 (~5.5 min)
  N_ATTACK=${STUDY_ATTACK_IMAGES:-32}    # BIM, APGD and Square at t=0 and t=TS (~10 min)
  N_MANIFOLD=${STUDY_MANIFOLD_IMAGES:-100}  # convergence with its controls (~3 min)
  T=${STUDY_TIMESTEPS:-10}               # the paper's T: its sigma grid and the convergence
  TS=${STUDY_SWEEP_TIMESTEPS:-5}         # the ablations, tuning, corruptions and attacks
  TUNE_STEPS=${STUDY_TUNE_STEPS:-24}     # Adam steps per tuning seed, batches of 8 (~2 min a seed)
  TRAIN=()
  CORRUPTIONS=all
  ATTACK=(attack.checks.num_images=2 "attack.queries=${STUDY_SQUARE_QUERIES:-50}")
  EPS=${STUDY_EPS:-0.001}                # ~0.26/255: APGD fooled half the demo's images at 0.0005
  PAPER_SIGMAS="[0,0.25,0.5,0.75,1,2]"   # reference units (the paper's grid)
  SWEEP_SIGMAS="[0,0.5]"                 # clean and the paper's 0.5 for the ablations
  BOOT=()
  MAX_IMAGES="50,100,200"                # decoders fitted on these many images (+ all 431)
  ALPHAS=${STUDY_ALPHAS:-0.01,100,10000}  # the alpha dose-response (0.01: the paper's)
  BM_ALPHAS=${STUDY_BATCH_MEAN_ALPHAS:-100,10000}  # the same with batch-mean errors
  REL_ALPHAS=${STUDY_RELATIVE_ALPHAS:-0.001,0.01,0.1}  # alpha as a fraction of ||e_n|| (relative)
fi
NET=(backbone=efficientnet_lite0 data=imagenet_sample)
DEC_FILE="$OUT/train-feedback/decoders.pt"
DEC="pc.decoders=$DEC_FILE"
EVAL=(data.split=eval "$DEC" eval.sigma_unit=reference "${BOOT[@]}")
# Lite0's std is 0.5: the paper's (reference) sigma s is normalised sigma s x 0.226 / 0.5. tune
# and manifold take normalised sigmas: reference 0.5 and 1.0 -> 0.226, 0.452; 0.25 -> 0.113.
TUNE_SIGMAS="[0.226,0.452]"
MANIFOLD_SIGMAS="[0.113,0.226,0.452]"
# The encoders of Lite0 (B0's layout: 8). lambda on one at a time; the top one has no feedback.
ONE_LAMBDA="choice(0,[0.1,0,0,0,0,0,0,0],[0,0.1,0,0,0,0,0,0],[0,0,0.1,0,0,0,0,0],[0,0,0,0.1,0,0,0,0],[0,0,0,0,0.1,0,0,0],[0,0,0,0,0,0.1,0,0],[0,0,0,0,0,0,0.1,0])"
start=$(date +%s)
want() {  # STAGES="2 9" runs only those stages (default: all of them)
  [ -z "${STAGES:-}" ] && return 0
  for s in $STAGES; do [ "$s" = "$1" ] && return 0; done
  return 1
}
stage() { echo; echo "== $1 ($(($(date +%s) - start)) s so far)"; }

if want 1; then
stage "1/12 decoders by least squares on the decoders half (431 training images)"
"$PCNETS" train-feedback "${NET[@]}" data.split=decoders train=demo "${TRAIN[@]}" \
  --out "$OUT/train-feedback"
fi

if want 2; then
stage "2/12 the paper's sigma grid (reference units) at T=$T on $N eval images"
"$PCNETS" eval-noise "${NET[@]}" "${EVAL[@]}" "data.limit=$N" "eval.sigmas=$PAPER_SIGMAS" \
  --timesteps "$T" --out "$OUT/eval-noise"
fi

if want 3; then
stage "3/12 alpha dose-response at T=$TS: per-sample errors with and without gradient scaling"
"$PCNETS" eval-noise -m "${NET[@]}" "${EVAL[@]}" "data.limit=$N_SWEEP" "eval.sigmas=$SWEEP_SIGMAS" \
  "pc.timesteps=$TS" "pc.alpha=$ALPHAS" pc.gradient_scaling=false,true --out "$OUT/alpha"
fi

if want 4; then
stage "4/12 alpha dose-response: batch-mean errors (the reference code's)"
"$PCNETS" eval-noise -m "${NET[@]}" "${EVAL[@]}" "data.limit=$N_SWEEP" "eval.sigmas=$SWEEP_SIGMAS" \
  "pc.timesteps=$TS" "pc.alpha=$BM_ALPHAS" pc.error_reduction=batch_mean \
  --out "$OUT/alpha-batch-mean"
fi

if want 5; then
stage "5/12 alpha dose-response: relative normalisation (alpha x ||e_n|| along g_n; beyond the paper)"
"$PCNETS" eval-noise -m "${NET[@]}" "${EVAL[@]}" "data.limit=$N_SWEEP" "eval.sigmas=$SWEEP_SIGMAS" \
  "pc.timesteps=$TS" "pc.alpha=$REL_ALPHAS" pc.alpha_normalization=relative \
  --out "$OUT/alpha-relative"
fi

if want 6; then
stage "6/12 lambda on one encoder at a time (job 0: lambda 0 everywhere, the baseline)"
"$PCNETS" eval-noise -m "${NET[@]}" "${EVAL[@]}" "data.limit=$N_SWEEP" "eval.sigmas=$SWEEP_SIGMAS" \
  "pc.timesteps=$TS" "pc.lam=${LAMBDAS:-$ONE_LAMBDA}" --out "$OUT/lambda-per-layer"
fi

if want 7; then
stage "7/12 decoder quality: decoders fitted on $MAX_IMAGES images (held-out R^2 in each run)"
"$PCNETS" train-feedback -m "${NET[@]}" data.split=decoders train=demo "${TRAIN[@]}" \
  "train.max_images=$MAX_IMAGES" --out "$OUT/decoders-by-size"
JOBS=$(echo "$MAX_IMAGES" | tr ',' '\n' | awk -v d="$OUT/decoders-by-size" '{printf "%s%s/%d/decoders.pt", (NR>1?",":""), d, NR-1}')
"$PCNETS" eval-noise -m "${NET[@]}" data.split=eval eval.sigma_unit=reference "${BOOT[@]}" \
  "data.limit=$N_SWEEP" "eval.sigmas=$SWEEP_SIGMAS" "pc.timesteps=$TS" \
  "pc.decoders=$DEC_FILE,$JOBS" --out "$OUT/decoder-quality"
fi

if want 8; then
stage "8/12 tuning with 3 seeds, sigma and T=$TS matched to the evaluation; held-out objective"
"$PCNETS" tune -m "${NET[@]}" data.split=decoders "$DEC" seed=0,1,2 "tune.steps=$TUNE_STEPS" \
  tune.batch_size=8 tune.lr=0.05 "tune.timesteps=$TS" "tune.sigmas=$TUNE_SIGMAS" --out "$OUT/tune"
"$PCNETS" eval-noise -m "${NET[@]}" "${EVAL[@]}" "data.limit=$N_SWEEP" "eval.sigmas=$SWEEP_SIGMAS" \
  "pc.timesteps=$TS" "pc.hyper=null,$OUT/tune/0/hyper.json,$OUT/tune/1/hyper.json,$OUT/tune/2/hyper.json" \
  --out "$OUT/tuned-vs-default"
fi

if want 9; then
stage "9/12 all 19 corruptions at severity 3 on $N_CORRUPT stratified images, T=$TS"
# severity 3 only: 19 corruptions x 5 severities would be 5x the time; the middle severity keeps
# every corruption (the relative mCE is a mean over corruptions).
"$PCNETS" eval-corruptions "${NET[@]}" "${EVAL[@]}" "data.limit=$N_CORRUPT" \
  "corruptions.names=$CORRUPTIONS" "corruptions.severities=[3]" --timesteps "$TS" \
  --out "$OUT/eval-corruptions"
fi

if want 10; then
stage "10/12 attacks on $N_ATTACK images at eps $EPS: BIM, APGD and Square at t=0 and t=$TS"
"$PCNETS" attack "${NET[@]}" data.split=eval "$DEC" attack=bim "attack.also=[apgd,square]" \
  "attack.num_images=$N_ATTACK" "attack.timesteps=[0,$TS]" attack.allow_suspect=true \
  "${ATTACK[@]}" --eps "$EPS" --out "$OUT/attack"
fi

if want 11; then
stage "11/12 convergence to clean representations, with its controls"
"$PCNETS" manifold "${NET[@]}" data.split=eval "$DEC" "data.limit=$N_MANIFOLD" \
  "manifold.timesteps=$T" "manifold.sigmas=$MANIFOLD_SIGMAS" --out "$OUT/manifold"
fi

if want 12; then
stage "12/12 the report (and each sweep's sweep.md)"
SWEEPS=(alpha alpha-batch-mean alpha-relative lambda-per-layer decoder-quality tuned-vs-default tune)
"$PCNETS" report "$OUT/train-feedback" "$OUT/eval-noise" "$OUT/eval-corruptions" "$OUT/attack" \
  "$OUT/manifold" "$OUT/decoders-by-size" "${SWEEPS[@]/#/$OUT/}" --out "$OUT/REPORT.md"
fi
echo; echo "study finished in $(($(date +%s) - start)) s: $OUT/REPORT.md"
