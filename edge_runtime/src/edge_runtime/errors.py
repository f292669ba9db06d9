"""One exception type for input the user can fix; the CLI prints it as one line and exits 2."""

import errno


class EdgeRuntimeError(Exception):
    pass


def one_line(exc: BaseException, fixable: tuple[type, ...] = ()) -> tuple[int, str]:
    """(exit code, message) for an error reaching a command line: 2 for input the user can fix
    (EdgeRuntimeError, a `fixable` type, a path the OS refused), 1 for a bug, which says how to report it."""
    if isinstance(exc, (EdgeRuntimeError, *fixable)):
        return 2, str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        hint = "free some space and run it again" if exc.errno == errno.ENOSPC else "check the path and its permissions"
        return 2, f"{where}{exc.strerror}; {hint}"
    return 1, f"unexpected {type(exc).__name__}: {exc}; rerun with --debug for the traceback and report it"
