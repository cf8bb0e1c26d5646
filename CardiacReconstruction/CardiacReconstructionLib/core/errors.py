"""Errors the engine raises for problems the user can fix.

Every check on user input raises :class:`InputError` with a one-line message that says what was
wrong and what is expected; the CLI prints it without a traceback and the Slicer module shows it
in a message box. Anything else escaping the engine is a bug.
"""


class InputError(ValueError):
    """Bad input: the message says what was wrong and what is expected."""


class Cancelled(RuntimeError):
    """The caller's cancel flag was raised; nothing was written."""
