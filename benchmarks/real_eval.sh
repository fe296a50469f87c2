#!/usr/bin/env bash
# Evaluation on the real data in ../shared/data (issue 7): ejc beside the baselines of the same run.
# Usage: benchmarks/real_eval.sh [helpdesk|helpdesk_named|hdfs|hadoop ...]   (default: all four)
# Results: benchmarks/out/eval_<name>.json (+ plots in benchmarks/out/plots_<name>/); each command
# prints its result record as the last stdout line.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EJC_DATA:-../shared/data}
OUT=benchmarks/out
mkdir -p "$OUT"
PY=${PYTHON:-python}

run() {  # name, then the evaluate arguments
  local name=$1; shift
  echo "== $name: ejc evaluate $*" >&2
  /usr/bin/time -v "$PY" -m ejc.cli evaluate "$@" --out "$OUT/eval_$name.json" --plot "$OUT/plots_$name" \
    2> "$OUT/eval_$name.log" | tail -1
}

for what in "${@:-helpdesk helpdesk_named hdfs hadoop}"; do
  for w in $what; do
    case $w in
      helpdesk) run helpdesk next-event "$DATA/process/helpdesk_tax.csv" --seed 0
                # the in-sample ceilings of the same split, beside what was measured
                "$PY" benchmarks/next_event_ceiling.py "$DATA/process/helpdesk_tax.csv" --result "$OUT/eval_helpdesk.json" --out "$OUT/ceiling_helpdesk.json" ;;
      helpdesk_named)  # the full Helpdesk log with activity names: a log nothing was tuned on
                run helpdesk_named next-event "$DATA/process/helpdesk_named.csv" --seed 0
                "$PY" benchmarks/next_event_ceiling.py "$DATA/process/helpdesk_named.csv" --result "$OUT/eval_helpdesk_named.json" --out "$OUT/ceiling_helpdesk_named.json" ;;
      hdfs) run hdfs anomaly --train "$DATA/logs/hdfs_sessions/train.csv" --test "$DATA/logs/hdfs_sessions/test.csv" --label-col label --seed 0 ;;
      hadoop) run hadoop anomaly --train "$DATA/logs/hadoop_sessions/hadoop_train" --test-normal "$DATA/logs/hadoop_sessions/hadoop_test_normal" \
                --test-abnormal "$DATA/logs/hadoop_sessions/hadoop_test_abnormal" --seed 0 ;;
      *) echo "unknown data set $w (helpdesk, helpdesk_named, hdfs, hadoop)" >&2; exit 2 ;;
    esac
  done
done
