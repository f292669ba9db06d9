"""User-facing errors: one line that names the file or value and says how to fix it."""


class EdgeskinError(Exception):
    """A problem with the user's input. The CLI prints it as one line and exits with code 2."""


def missing_extra(what: str, extra: str, exc: ImportError) -> EdgeskinError:
    """The error for a command whose optional dependencies (a pyproject extra) are not installed."""
    return EdgeskinError(f"{what} needs the {extra} extra ({exc.name} missing): "
                         f"pip install 'edgeskin[{extra}]' -c requirements/constraints.txt")
