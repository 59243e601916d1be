"""`tk report`: REPORT.md and its latency chart, from run files only (never loads a model)."""
