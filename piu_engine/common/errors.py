"""User-facing errors: the CLI prints them as one line and exits 2."""


class CommandError(RuntimeError):
    """A command cannot do what was asked; the message says why."""


class ConfigError(ValueError):
    """A setting is unknown, missing or has a bad value; the message names it."""


class ChecksumError(RuntimeError):
    """A file's SHA-256 is not the one recorded for it."""


class DatasetError(ValueError):
    """A dataset is missing or not in the expected on-disk format."""
