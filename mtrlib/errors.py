"""The user-error classes: one base (`UserError`) that the UI and the CLI show as-is, with its fix.

A user error is a problem the person at the keyboard can fix (a file, a setting, a launch),
phrased for a non-programmer: what is wrong, where, and what to do. Programming errors stay
ordinary exceptions (and a traceback). Each layer raises its own subclass, so a caller can tell
a bad file from a bad setting without importing the layer that raised it.
"""


class UserError(ValueError):
    """A problem the user can fix: the message says which file / column / row / setting, what is
    wrong, and what to do (`fix`). `source` names the file or the place it came from.
    `everywhere`: under DDP, every process found the same problem (only rank 0 says it)."""

    def __init__(self, message: str, *, fix: str | None = None, source: str | None = None,
                 everywhere: bool = False):
        self.problem = message
        self.fix = fix
        self.source = source
        self.everywhere = everywhere
        text = message
        if source and not message.startswith(source):
            text = f"{source}: {message}"
        if fix:
            text = f"{text} Fix: {fix}"
        super().__init__(text)


class DataError(UserError):
    """A problem with the user's data (a file, a column, a row, a task definition)."""


class ConfigError(UserError):
    """An impossible or unknown setting (a config file, a flag, a URL key, a widget value)."""


class TrainingError(UserError):
    """A problem found while setting up or running training (the optimiser, a device)."""


class DistributedError(UserError):
    """A problem with a multi-process (torchrun) launch."""


__all__ = ["UserError", "DataError", "ConfigError", "TrainingError", "DistributedError"]
