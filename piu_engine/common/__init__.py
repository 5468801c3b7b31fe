"""Torch-free foundations every layer may use: errors, files, JSON, settings, events."""
