"""Datasets: discovery and splits, fetch (download + safe extract), synthetic data, the survey
behind `tk data inspect`. TensorFlow-free.
"""
