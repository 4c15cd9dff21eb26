#!/usr/bin/env bash
# Push-T from nothing: expert data -> LeWM -> the paper protocol, as one script.
#
# CPU (the measured recipe; 2 cores: ~15 min collection, ~65 min training, ~25 min eval):
#   examples/pusht_recipe.sh
# A CUDA machine, at the paper's scale (224 px, the `paper` preset, bf16 autocast):
#   PRESET=paper IMAGE_SIZE=224 EPISODES=10000 examples/pusht_recipe.sh
#
# Every stage is skipped when its output is already there, and training resumes from its
# last checkpoint, so a killed run continues where it stopped. Knobs (environment):
#   OUT            folder for data/, run/ and eval/ (default runs/pusht_recipe)
#   EPISODES       expert episodes to collect (default 3000)
#   WORKERS        collection processes (default: every core)
#   IMAGE_SIZE     frame side in px (default 64)
#   PRESET         cpu | paper (default cpu)
#   DEVICE         auto | cpu | cuda (default auto: CUDA when present, with bf16 autocast)
#   STEPS, BATCH, SIGREG   training overrides (default for cpu: 4000, 128, 0.2; paper: its own)
#   THREADS        torch CPU threads (default 0: torch's choice)
#   PLANNER        mppi | cem (default mppi, the better one on Push-T)
#   EVAL_EPISODES  protocol episodes (default 50, seed 42)
set -euo pipefail

OUT=${OUT:-runs/pusht_recipe}
EPISODES=${EPISODES:-3000}
WORKERS=${WORKERS:-$(nproc)}
IMAGE_SIZE=${IMAGE_SIZE:-64}
PRESET=${PRESET:-cpu}
DEVICE=${DEVICE:-auto}
THREADS=${THREADS:-0}
PLANNER=${PLANNER:-mppi}
EVAL_EPISODES=${EVAL_EPISODES:-50}
if [ "$PRESET" = cpu ]; then
  STEPS=${STEPS:-4000}
  BATCH=${BATCH:-128}
  SIGREG=${SIGREG:-0.2}
fi
LEWM=${LEWM:-lewm}
export SDL_VIDEODRIVER=${SDL_VIDEODRIVER:-dummy} SDL_AUDIODRIVER=${SDL_AUDIODRIVER:-dummy}

DATA=$OUT/data
RUN=$OUT/run
mkdir -p "$OUT"
stage() { echo "== $1 ($(date +%H:%M:%S))"; }
elapsed() { echo "   $1: $(($(date +%s) - $2)) s" | tee -a "$OUT/wall_times.txt"; }

have=0
if [ -f "$DATA/meta.json" ]; then
  have=$(find "$DATA/episodes" -name '*.npz' 2>/dev/null | wc -l)
fi
if [ "$have" -lt "$EPISODES" ]; then
  stage "collect $((EPISODES - have)) expert episodes with $WORKERS workers"
  t=$(date +%s)
  "$LEWM" collect --env lewm/PushT-v0 --policy expert --episodes $((EPISODES - have)) \
    --workers "$WORKERS" --image-size "$IMAGE_SIZE" --out "$DATA"
  elapsed collect "$t"
fi

if [ ! -f "$RUN/model.safetensors" ]; then
  t=$(date +%s)
  if [ -d "$RUN/train_state" ]; then
    stage "resume training"
    "$LEWM" train --out "$RUN" --resume --device "$DEVICE"
  else
    stage "train ($PRESET preset)"
    args=(--data "$DATA" --out "$RUN" --preset "$PRESET" --device "$DEVICE" --threads "$THREADS")
    [ -n "${STEPS:-}" ] && args+=(--steps "$STEPS")
    [ -n "${BATCH:-}" ] && args+=(--batch-size "$BATCH")
    [ -n "${SIGREG:-}" ] && args+=(--sigreg-weight "$SIGREG")
    [ "$IMAGE_SIZE" != 64 ] && args+=(--model-image-size "$IMAGE_SIZE")
    "$LEWM" train "${args[@]}"
  fi
  elapsed train "$t"
fi

if [ ! -f "$OUT/eval/results.json" ]; then
  stage "paper protocol: $EVAL_EPISODES held-out episodes, seed 42, $PLANNER"
  t=$(date +%s)
  "$LEWM" eval --agent "$RUN" --data "$DATA" --episodes "$EVAL_EPISODES" --planner "$PLANNER" \
    --device "$DEVICE" --out "$OUT/eval"
  elapsed eval "$t"
fi
cat "$OUT/eval/results.md"
