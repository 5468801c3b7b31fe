"""The headless forget-request service: spool directory, state database,
model registry, acceptance gate, executor and daemon.

The read API for other front ends (the TUI) is :class:`~piu_engine.service.state.StateReader`.
"""
