"""tk: a folder of labelled images to a small, fast, verified classifier on an edge device."""

__version__ = "0.1.0"
