"""Export and verify: converters (SavedModel, TFLite, ONNX), the reference predictors (Keras,
SavedModel) and parity. Needs TensorFlow.
"""
