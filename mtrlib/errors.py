"""The one exception type for bad data, so every caller (UI, CLI) can show it as-is."""


class DataError(ValueError):
    """A problem with the user's data, phrased for a non-programmer.

    The message says which file / column / row, what is wrong, and what to do.
    """

    def __init__(self, message: str, *, fix: str | None = None, source: str | None = None):
        self.problem = message
        self.fix = fix
        self.source = source
        text = message
        if source and not message.startswith(source):
            text = f"{source}: {message}"
        if fix:
            text = f"{text} Fix: {fix}"
        super().__init__(text)
