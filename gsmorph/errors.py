"""The one exception type the CLI turns into a clear message and a non-zero exit."""


class GSMorphError(Exception):
    """A user-facing error: bad input, a missing file or key. The message names it."""
