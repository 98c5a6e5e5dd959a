"""User-facing errors: one line that names the problem and the fix. The CLI prints them without a
traceback and exits with status 2."""


class ParityError(ValueError):
    """Bad input from a user (file, flag, configuration, checkpoint)."""
