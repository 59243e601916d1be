"""The device path: TFLite and ONNX predictors, `tk predict`, `tk bench`. Base install only: it
imports with TensorFlow and Keras absent (tests/test_layout.py enforces it).
"""
