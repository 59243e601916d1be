"""The browser as a verified target: tk pack --web, and tk verify/bench --web in headless Chromium.

Standard library plus edge and core: a web bundle is made, served and checked where the device
path runs, without TensorFlow. Only the CLI imports this package.
"""
