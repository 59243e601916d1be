#!/usr/bin/env bash
# Issue 17's goal (int8 at >= 98% agreement, <= 1 pt accuracy loss, >= 1.3x faster than float32) on
# the most realistic models tk can make offline: MobileNetV2 224 trained end to end on crops of real
# photographs (benchmarks/photo_patches.py), with export.int8_budget {min_agreement: 0.98,
# max_accuracy_drop: 0.01} on LiteRT, ONNX Runtime and OpenVINO.
#   mnv2_photos_trained  crops of 10-45% of a photo: wide margins (the easy case)
#   mnv2_photos_hard     crops of 1-6%: flat regions shared across photos, real near-ties
# Run from the repository root with the project's venv active (pip install -e '.[train,openvino-export]'):
#   bash benchmarks/int8_goal_photos.sh        (about 15 min of 2 cores per model to train)
set -euo pipefail
W=benchmarks/work
tk="python -m toolkit"
mkdir -p $W/runs
WHEEL=$(ls $W/scikit_image-0.26.0-*.whl 2>/dev/null || true)
if [ -z "$WHEEL" ]; then  # the sample photos ship inside the wheel; it is read, never installed
  python -m pip download --no-deps scikit-image==0.26.0 -d $W
  WHEEL=$(ls $W/scikit_image-0.26.0-*.whl)
fi
[ -d $W/photos ] || python benchmarks/photo_patches.py data $W/photos "$WHEEL" --per-class 100
[ -d $W/photos_hard ] || python benchmarks/photo_patches.py data $W/photos_hard "$WHEEL" --per-class 100 --area 0.01,0.06
for name in mnv2_photos_trained mnv2_photos_hard; do
  R=$W/runs/$name
  [ -f $R/model.keras ] || $tk train benchmarks/recipes/$name.yaml --runs-dir $W/runs
  python benchmarks/margins.py $R --split validation
  python benchmarks/margins.py $R --split test
  $tk export $R --format tflite,onnx,openvino --quantize none,int8
  $tk verify $R || true   # the verdicts are the figures; a failure is one of them
  $tk bench $R/model_float32.tflite $R/model_int8.tflite $R/model.onnx $R/model_int8.onnx \
    $R/model_float32.xml $R/model_int8.xml --threads 1,2
done
