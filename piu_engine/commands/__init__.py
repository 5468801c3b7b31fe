"""Subcommands of the ``piu`` CLI, one module per area."""
