"""Training on Keras 3: backbones registry, input pipeline, cached feature extraction, callbacks,
the phases of `tk train`, training curves.
"""
