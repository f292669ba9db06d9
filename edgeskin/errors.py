"""User-facing errors: one line that names the file or value and says how to fix it."""


class EdgeskinError(Exception):
    """A problem with the user's input. The CLI prints it as one line and exits with code 2."""
