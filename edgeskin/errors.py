"""User-facing errors: one line that names the file or value and says how to fix it."""


class EdgeskinError(Exception):
    """A problem with the user's input. The CLI prints it as one line and exits with code 2."""


def one_line(exc: BaseException) -> tuple[int, str]:
    """(exit code, message) for an error reaching `edgeskin`'s command line; see edge_runtime's."""
    from edge_runtime.errors import one_line as runtime_one_line

    return runtime_one_line(exc, fixable=(EdgeskinError,))
