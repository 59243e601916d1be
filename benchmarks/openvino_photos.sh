#!/usr/bin/env bash
# Issue 17's figures (BENCHMARKS.md "OpenVINO against LiteRT and ONNX Runtime" and "int8 within a budget"):
# MobileNetV2 224 on crops of real photographs that PyPI wheels ship (benchmarks/photo_patches.py).
# Run from the repository root with the project's venv active (pip install -e '.[train,openvino-export]'):
#   bash benchmarks/openvino_photos.sh
set -euo pipefail
W=benchmarks/work
tk="python -m toolkit"
mkdir -p $W
WHEEL=$(ls $W/scikit_image-0.26.0-*.whl 2>/dev/null || true)
if [ -z "$WHEEL" ]; then  # the sample photos ship inside the wheel; it is read, never installed
  python -m pip download --no-deps scikit-image==0.26.0 -d $W
  WHEEL=$(ls $W/scikit_image-0.26.0-*.whl)
fi
[ -d $W/photos ] || python benchmarks/photo_patches.py data $W/photos "$WHEEL" --per-class 100
[ -f $W/mobilenet_v2_224_photo_standin.weights.h5 ] || \
  python benchmarks/photo_patches.py standin $W/mobilenet_v2_224_photo_standin.weights.h5 "$WHEEL"
R=$W/runs/mnv2_photos
[ -f $R/model.keras ] || $tk train benchmarks/recipes/mnv2_photos.yaml --runs-dir $W/runs
$tk export $R --format savedmodel,tflite,onnx,openvino --quantize none,float16,int8
$tk verify $R || true   # int8 of this low-margin model fails the default gate on every runtime
$tk bench $R/model_float32.tflite $R/model_int8.tflite $R/model.onnx $R/model_int8.onnx \
  $R/model_float32.xml $R/model_float16.xml $R/model_int8.xml --threads 1,2 --runs 200
python benchmarks/openvino_converters.py convert $R
# The budget: a copy of the run whose recipe sets export.int8_budget {min_agreement: 0.98,
# max_accuracy_drop: 0.01} and export.int8_fallback.max_size_ratio: 4.0 (see BENCHMARKS.md), then
#   $tk export $W/runs/mnv2_photos_budget --format openvino,onnx,tflite --quantize none,int8 && $tk verify ...
