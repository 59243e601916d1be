"""One exception type for everything the user can fix.

Domain code raises TkError with a message that says what failed, what was received and how to fix
it; the CLI prints it as one line and exits 1. Any other exception is a bug and keeps its traceback.
"""


class TkError(Exception):
    """A mistake the user can fix (bad recipe, missing file, unknown name, ...)."""


class ParityError(TkError):
    """An artifact does not predict what the reference model predicts."""
