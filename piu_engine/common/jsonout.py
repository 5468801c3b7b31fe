"""JSON as PIU writes it: strict (RFC 8259), so any parser reads reports,
results and ``--json`` output. A number that could not be measured (NaN, such
as an MIA on too few images) is written as null; numpy scalars, tuples, sets
and paths become their plain JSON forms."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def plain(value: Any) -> Any:
    """``value`` with non-finite floats as None and containers made JSON-shaped."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:  # numpy scalar
        return plain(value.item())
    return value


def dumps(value: Any, **kwargs) -> str:
    return json.dumps(plain(value), allow_nan=False, **kwargs)
