"""`python -m toolkit` is `tk` (useful where the console script is not on PATH)."""

import sys

from toolkit.cli.launch import main

sys.exit(main())
