"""User-facing errors: the CLI prints them as one line and exits 2."""


class CommandError(RuntimeError):
    """A command cannot do what was asked; the message says why."""


class ConfigError(ValueError):
    """A setting is unknown, missing or has a bad value; the message names it."""


class ChecksumError(RuntimeError):
    """A file's SHA-256 is not the one recorded for it."""


class DatasetError(ValueError):
    """A dataset is missing or not in the expected on-disk format."""


class DivergedError(CommandError):
    """Training produced a non-finite loss or weight: the run was ended there and
    nothing was saved. The message names the method, phase, step and loss."""

    def __init__(
        self,
        detail: str,
        method: str = "",
        phase: str = "",
        epoch: int | None = None,
        step: int | None = None,
        loss: float | None = None,
    ):
        self.detail, self.method, self.phase = detail, method, phase
        self.epoch, self.step, self.loss = epoch, step, loss
        super().__init__(self._message())

    def _message(self) -> str:
        where = [f"phase {self.phase}"] if self.phase else []
        if self.epoch is not None:
            where.append(f"epoch {self.epoch}")
        if self.step is not None:
            where.append(f"step {self.step}")
        text = f"{self.method or 'training'} diverged"
        if where:
            text += " in " + ", ".join(where)
        text += f": {self.detail}"
        if self.loss is not None:
            text += f" (loss {self.loss})"
        return text + "; nothing was saved (lower the learning rate or the loss weights)"

    def for_method(self, method: str) -> "DivergedError":
        """The same error, naming ``method`` (the training loop does not know it)."""
        if not self.method:
            self.method = method
            self.args = (self._message(),)
        return self

    def __reduce__(self):  # keep the fields across processes
        return (type(self), (self.detail, self.method, self.phase, self.epoch, self.step, self.loss))
