"""Unlearning methods, one module each, behind one interface.

The package itself imports nothing, so :mod:`.catalog` stays importable
without PyTorch; :mod:`.registry` binds each catalogued name to its run."""
