"""The foundation every part stands on: errors, the formats table, the recipe, run files, atomic I/O,
metrics and the one Pillow decoding path. numpy, Pillow and PyYAML only: no TensorFlow, no Keras.
"""
