"""Errors the harness reports to the user as one line (exit code 2), never as a traceback."""


class DumpbedError(Exception):
    """A usage or environment problem: bad input, missing tool, QEMU refusing to start."""
