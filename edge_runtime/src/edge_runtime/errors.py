"""One exception type for input the user can fix; the CLI prints it as one line and exits 2."""


class EdgeRuntimeError(Exception):
    pass
