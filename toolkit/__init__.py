"""tk: a folder of labelled images to a small, fast, verified classifier on an edge device."""

from .core.quiet import quiet_tensorflow_by_default

__version__ = "0.1.0"

# Before anything imports TensorFlow: its C++ start-up lines stay off the terminal of a script
# that uses tk's Python API, as they do in the CLI (set TF_CPP_MIN_LOG_LEVEL to choose yourself).
quiet_tensorflow_by_default()
