"""User-facing errors: the CLI prints them as one line and exits 2."""


class CommandError(RuntimeError):
    """A command cannot do what was asked; the message says why."""
