"""Widgets: each renders view-model state handed to it (no engine logic)."""
