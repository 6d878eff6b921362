#!/bin/bash
# On the GPU machine (repo root, .gpu/ carried): `bash .gpu/run.sh [MEMBER...]`.
# Trains the zoo members (default: the six YCbCr ones) for one lease: a smoke test of 60
# GPU steps (on failure the rest runs on the machine's 16 CPU cores instead), a phase at
# the full learning rate and an annealing phase (lr x 0.2), each bounded in wall time by
# Lightning's max_time (the last step is checkpointed), all members at once, batch 32.
# The members' exports come back after each phase as $OUT/phase1.tgz and phase2.tgz.
# Env: P1, P2 (seconds of training in each phase; P1=0: the annealing phase alone), BATCH,
# TRAINER (gpu|cpu), SMOKE=0 (no smoke test: a short second lease), MODELS_DIR, PYBIN,
# SKIP_PIP (for a rehearsal here: see docs/training.md).
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/gpu_lease_out}; mkdir -p "$OUT"
PYBIN=${PYBIN:-python3}
if [ -z "${SKIP_PIP:-}" ]; then
  $PYBIN -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
fi
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
MODELS_DIR=${MODELS_DIR:-src/rtaic/models}
M="$*"
[ -n "$M" ] || M="ycbcr_bpp0.1_fromrgb ycbcr_bpp0.25_fromrgb ycbcr_bpp0.5_fromrgb ycbcr_bpp0.75_fromrgb ycbcr_bpp1.0_fromrgb ycbcr_bpp2.0_fromrgb"
N=$(echo $M | wc -w)
C="data.root=.gpu/data/train data.val_root=.gpu/data/val trainer=${TRAINER:-gpu} logger=none data.batch_size=${BATCH:-32}"
ZOO=${RTAIC_OUTPUTS:-outputs}/zoo
(nvidia-smi || true) > "$OUT/smi.txt" 2>&1
$PYBIN -c "import torch, pytorch_lightning, hydra, constriction; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
if [ "${TRAINER:-gpu}" = gpu ] && [ "${SMOKE:-1}" != 0 ]; then
  t=$(date +%s)
  timeout 120 $PYBIN train.py model=rtaic_small model.l1_weight=0.5 target_bpp=0.5 color_space=ycbcr \
    model.architecture.patch=true init_from=$MODELS_DIR/ycbcr_bpp0.5.ckpt $C trainer.max_steps=60 \
    trainer.val_check_interval=30 trainer.enable_progress_bar=false hydra.run.dir=/tmp/smoke > "$OUT/smoke.log" 2>&1
  rc=$?; echo "[run] smoke test rc=$rc in $(( $(date +%s) - t )) s"
  if [ $rc != 0 ]; then C=${C/trainer=gpu/trainer=cpu}; echo "[run] falling back to the CPU: $C"; fi
fi
hms() { printf "00:%02d:%02d:%02d" $(($1 / 3600)) $(($1 / 60 % 60)) $(($1 % 60)); }
phase() {  # phase NAME MAX_TIME [zoo train options]
  local name=$1 limit=$2; shift 2
  echo "[run] $name at $(( $(date +%s) - T0 )) s"
  $PYBIN -m rtaic.training.zoo train --models-dir $MODELS_DIR --parallel $N --round-steps 100000 "$@" \
    --only $M $C "+trainer.max_time=$limit" > "$OUT/$name.log" 2>&1
  echo "[run] $name done at $(( $(date +%s) - T0 )) s"; grep -E "^\[zoo|failed" "$OUT/$name.log"
  $PYBIN -m rtaic.training.zoo export --models-dir $MODELS_DIR --only $M 2>&1 | grep -E "^exported|not exported"
  tar czf "$OUT/$name.tgz" $MODELS_DIR/*.ckpt $MODELS_DIR/manifest.json $ZOO/*/history.json
}
P1=${P1:-280}; P2=${P2:-100}
# --hours 0.005: every member starts at once, and no second round. Lightning's timer is
# restored with the checkpoint, so the annealing round's limit counts phase 1's time too.
[ "$P1" = 0 ] || phase phase1 "$(hms $P1)" --hours 0.005
phase phase2 "$(hms $((P1 + P2)))" --anneal
tar czf "$OUT/logs.tgz" $ZOO/*/train.log 2>/dev/null
echo "[run] end at $(( $(date +%s) - T0 )) s"
