"""User-facing errors: bad input the user can fix (a path, a config value, a file).

Entry points print these as one line instead of a stack trace; everything else is a bug and
keeps its traceback.
"""


class SageError(Exception):
    """Bad input or configuration, with a message that names the culprit and the fix."""
