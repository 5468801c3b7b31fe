"""PIU terminal UI (``piu tui``): watch and steer the forget-request service.

Importing this package does not import Textual; :mod:`piu_tui.app` does.
The engine and the daemon never import this package.
"""

__all__: list[str] = []
