#!/usr/bin/env bash
# The two MobileNetV2 224 runs behind BENCHMARKS.md's "ONNX int8" and "int8 that holds" sections:
#   mnv2_scratch8  from scratch, 8 epochs on 4 x 100 synthetic images (a confident model)
#   mnv2_standin   the stand-in base of export_parity.py + a head on cached features (low margin)
# Run from the repository root with the project's venv active: bash benchmarks/int8_hard_case.sh
set -euo pipefail
W=benchmarks/work
tk="python -m toolkit"
mkdir -p $W
[ -d $W/data ] || $tk data synth $W/data --classes 4 --per-class 60 --size 224
[ -d $W/data100 ] || $tk data synth $W/data100 --classes 4 --per-class 100 --size 224
[ -f $W/mobilenet_v2_224_standin.weights.h5 ] || PYTHONPATH=benchmarks python -c "
from pathlib import Path; import export_parity as ep
print(ep.standin_weights(Path('$W'), 'mobilenet_v2_224'))"
for r in mnv2_scratch8 mnv2_standin; do
  [ -f $W/runs/$r/model.keras ] || $tk train benchmarks/recipes/$r.yaml --runs-dir $W/runs
  $tk export $W/runs/$r --format tflite,onnx --quantize none,int8
  $tk verify $W/runs/$r || true   # the stand-in's int8 is expected to fail the default gate
done
python benchmarks/onnx_int8_bench.py $W/runs/mnv2_scratch8 MinMax,Percentile,Entropy
python benchmarks/int8_fallback_demo.py $W/runs/mnv2_standin --calibration-counts 50,100,200,500
