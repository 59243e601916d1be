"""Third-party code kept as its authors generated it (Apache-2.0, see LICENSE).

metadata_schema_py_generated.py: flatc's Python for TFLite's metadata schema
(tensorflow_lite_support/metadata/metadata_schema.fbs), from the mediapipe 1.2.3 wheel; the same
tables, fields and enums as tflite-support 0.4.4's copy. Vendored because the only packages that
ship it are mediapipe (~650 MB) and tflite-support (pins protobuf < 4, which cannot live beside
TensorFlow 2.21). It needs only `flatbuffers`, a dependency of the base install (LiteRT and
onnxruntime pull it in too). It lives in edge/ because the device path reads the metadata of bare
.tflite files (edge/tflite_metadata.py) and export writes it (export/metadata.py); under vendor/
so that tk's own style and duplicate checks pass over generated code.
The TFLite *model* schema is not vendored: the LiteRT runtime ships it (ai_edge_litert).
"""
