#!/usr/bin/env bash
# Runs `nas bench` and darts_step.py alternately (nas, torch, nas, torch, ...) on one
# configuration and appends one JSON line per run to $OUT (default bench-results.jsonl).
#
#   benches/pytorch/compare.sh REPS THREADS LAYERS BATCH ORDER STEPS [STRATEGY]
#   e.g. benches/pytorch/compare.sh 3 2 8 64 first 3
#        benches/pytorch/compare.sh 2 2 8 64 first 2 gdas     # darts (default), gdas, spos, retrain
#
# NAS (default ./target/release/nas) and PYTHON (default python3) choose the binaries.
# DEVICE (cpu, the default, or cuda) runs both on that device (`nas --device`, darts_step.py
# --device); COMPILE=1 adds a third run per repetition, PyTorch under torch.compile
# ("impl": "torch-compile").
# CHANNELS (default 16) sets the initial channels of both (e.g. 36 for the retraining step:
# CHANNELS=36 compare.sh 2 2 20 96 first 2 retrain).
# THREADS sets RAYON_NUM_THREADS for nas and --threads for PyTorch. The load average is
# recorded before every run, since the machine may be shared.
set -euo pipefail
reps=$1 threads=$2 layers=$3 batch=$4 order=$5 steps=$6 strategy=${7:-darts}
nas=${NAS:-./target/release/nas}
py=${PYTHON:-python3}
out=${OUT:-bench-results.jsonl}
device=${DEVICE:-cpu}
channels=${CHANNELS:-16}
impls="nas torch"
if [ "${COMPILE:-0}" = 1 ]; then impls="$impls torch-compile"; fi
here=$(dirname "$0")
for r in $(seq 1 "$reps"); do
  for impl in $impls; do
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    if [ "$impl" = nas ]; then
      res=$(RAYON_NUM_THREADS=$threads "$nas" --device "$device" bench --layers "$layers" --channels "$channels" \
        --batch "$batch" --size 32 --steps "$steps" --order "$order" --strategy "$strategy" --json)
    else
      compile=()
      if [ "$impl" = torch-compile ]; then compile=(--compile); fi
      res=$("$py" "$here/darts_step.py" --layers "$layers" --channels "$channels" --batch "$batch" \
        --size 32 --steps "$steps" --warmup 1 --order "$order" --strategy "$strategy" --threads "$threads" \
        --device "$device" "${compile[@]}" --json)
    fi
    "$py" -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(impl=sys.argv[2], rep=int(sys.argv[3]), threads=int(sys.argv[4]), load=sys.argv[5], device=sys.argv[6]); print(json.dumps(r))' \
      "$res" "$impl" "$r" "$threads" "$load" "$device" | tee -a "$out"
  done
done
