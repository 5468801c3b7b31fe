"""Which ``config.toml`` a command works on, with clear errors instead of silent defaults.

``--config PATH``, else ``$PIU_CONFIG``, else ``./config.toml``. A folder given
where the file is expected is an error naming the file inside it; a service
command (``piu status``, ``piu daemon``, ``piu tui``, ...) with no config file
anywhere says where it looked and how to make a workspace, instead of
serving the current folder with built-in defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

from piu_engine.common.errors import ConfigError


def _given(args) -> tuple[str, str] | None:
    """(where it came from, the path) of an explicitly named config, or None."""
    if getattr(args, "config", None):
        return "--config", str(args.config)
    if os.environ.get("PIU_CONFIG"):
        return "$PIU_CONFIG", os.environ["PIU_CONFIG"]
    return None


def check_config_arg(args, must_exist: bool = True) -> None:
    """A folder (or, with ``must_exist``, a missing file) named by ``--config`` / ``$PIU_CONFIG`` is a clear error."""
    given = _given(args)
    if given is None:
        return
    source, value = given
    p = Path(os.path.expanduser(value))
    if p.is_dir():
        inside = p / "config.toml"
        hint = (
            f"did you mean {source} {inside}?"
            if inside.is_file()
            else f"there is no config.toml in it; create a workspace with `piu init {p}`"
        )
        raise ConfigError(f"{source} {value}: is a directory, not a config file; {hint}")
    if must_exist and not p.exists():
        raise ConfigError(f"{source} {value}: config file not found; create a workspace with `piu init DIR`")


def require_config(args) -> Path:
    """The config file a service command works on; an error naming every place looked when there is none."""
    check_config_arg(args)
    given = _given(args)
    if given is not None:
        return Path(os.path.expanduser(given[1]))
    here = Path("config.toml")
    if here.is_file():
        return here
    command = " ".join(
        str(v) for k in ("command", "jobs_command") if isinstance(v := getattr(args, k, None), str) and v
    )
    raise ConfigError(
        f"`piu {command}` found no config.toml: --config was not given, $PIU_CONFIG is not set, "
        f"and there is none in the current folder ({Path.cwd()}). Create a workspace with "
        f"`piu init DIR`, then run from DIR or pass --config DIR/config.toml"
    )


def load_workspace_config(args):
    """The loaded :class:`~piu_engine.core.config.Config` of the workspace a service command works on."""
    from piu_engine.core.config import load_config

    return load_config(require_config(args))
