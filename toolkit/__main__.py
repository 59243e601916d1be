"""`python -m toolkit` is `tk` (useful where the console script is not on PATH)."""

from toolkit.cli.app import app

app(prog_name="tk")
