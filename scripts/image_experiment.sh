#!/usr/bin/env bash
# The image experiment of docs/image_models.md ("Results"): catalog ensemble, CNN, CNN + catalog fusion,
# CNN + DANN and the wide-field ceiling, trained on simulated Y10 fields and scored side by side.
#
# Usage: scripts/image_experiment.sh STEP...   (steps run in the order given; finished outputs
# are kept, so a rerun only does what is missing)
#   data     simulate deep (labelled, source) and wide (target) fields with cutouts
#   catalog  5-member catalog ensemble on the deep training set
#   cnn      CNN on deep cutouts            fusion   CNN + catalog features on deep
#   fusion_long  a smaller, faster fusion CNN trained 35 epochs instead of EPOCHS
#   fusion_ens   the same as an ensemble of 2 members (seeds 10, 11)
#   dann     CNN + DANN: deep labelled + wide unlabelled
#   ceiling  CNN trained on labelled wide-field data (the best adaptation can do)
#   infer    every model over the deep and wide test sets (jobs/infer_lsst.py)
#   report   deep-field and wide-field reports (jobs/evaluate.py)
# Settings (environment): WORK (default runs/images), N_TRAIN (40000), N_TEST (10000),
# SIZE (cutout pixels, 24), EPOCHS (15), CNN_BATCH (256), NUM_CPUS (2).
set -euo pipefail

WORK=${WORK:-runs/images}
N_TRAIN=${N_TRAIN:-40000}
N_TEST=${N_TEST:-10000}
SIZE=${SIZE:-24}
EPOCHS=${EPOCHS:-15}
CNN_BATCH=${CNN_BATCH:-256}
NUM_CPUS=${NUM_CPUS:-2}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$WORK/models" "$WORK/catalogs"

simulate() {  # name n seed field
    [ -e "$WORK/sim/$1/_simulation.json" ] || "$PY" "$HERE/jobs/simulate_survey.py" \
        --n-objects "$2" --seed "$3" --field "$4" --cutouts --cutout-size "$SIZE" \
        --output "$WORK/sim/$1"
}

train() {  # name args...
    local name=$1
    shift
    [ -e "$WORK/models/$name/model.json" ] || "$PY" "$HERE/jobs/train_ensemble.py" \
        --output "$WORK/models/$name" --name "$name" --num-cpus "$NUM_CPUS" "$@" \
        2>&1 | grep -v -E '^\s*$|row/s\]|Running Dataset|\[A' > "$WORK/models/$name.log"
}

cnn() {  # name inputs train args...
    local name=$1 inputs=$2 data=$3
    shift 3
    train "$name" --train "$WORK/sim/$data" --inputs "$inputs" --members 1 \
        --epochs "$EPOCHS" --patience "$EPOCHS" --batch-size "$CNN_BATCH" "$@"
}

infer() {  # model test
    local out="$WORK/catalogs/$1-on-$2"
    [ -e "$out/raypz_run_summary.json" ] || "$PY" "$HERE/jobs/infer_lsst.py" \
        --input "$WORK/sim/$2" --model "$WORK/models/$1" --output "$out" \
        --num-cpus "$NUM_CPUS" 2>&1 | tail -n 30 > "$out.log"
}

for step in "$@"; do
    case $step in
    data)
        simulate deep_train "$N_TRAIN" 11 deep
        simulate deep_test "$N_TEST" 12 deep
        simulate wide_train "$N_TRAIN" 13 wide
        simulate wide_test "$N_TEST" 14 wide
        ;;
    catalog)  # batch 512: the catalog networks' default when the results were measured
        train catalog --train "$WORK/sim/deep_train" --members 5 --epochs 60 --batch-size 512
        ;;
    cnn) cnn cnn cutouts deep_train ;;
    fusion) cnn fusion fusion deep_train ;;
    fusion_long)
        cnn fusion_long fusion deep_train --cnn-stem 16 --cnn-blocks 32 64 96 \
            --epochs 35 --patience 35
        ;;
    fusion_ens)
        cnn fusion_ens fusion deep_train --cnn-stem 16 --cnn-blocks 32 64 96 \
            --epochs 35 --patience 35 --members 2 --seed 10
        ;;
    dann) cnn dann cutouts deep_train --domain-adapt --target "$WORK/sim/wide_train" ;;
    ceiling) cnn ceiling cutouts wide_train ;;
    infer)
        for model in catalog cnn fusion fusion_long fusion_ens dann ceiling; do
            for test in deep_test wide_test; do
                [ -e "$WORK/models/$model/model.json" ] && infer "$model" "$test"
            done
        done
        ;;
    report)
        for test in deep_test wide_test; do
            compare=()
            for model in cnn fusion fusion_long fusion_ens dann ceiling; do
                [ -e "$WORK/catalogs/$model-on-$test/properties" ] &&
                    compare+=(--compare "$model=$WORK/catalogs/$model-on-$test")
            done
            "$PY" "$HERE/jobs/evaluate.py" --predictions "$WORK/catalogs/catalog-on-$test" \
                --name catalog "${compare[@]}" --truth "$WORK/sim/$test" \
                --train "$WORK/sim/deep_train" --report "$WORK/reports/$test"
        done
        ;;
    *)
        echo "unknown step: $step" >&2
        exit 2
        ;;
    esac
done
