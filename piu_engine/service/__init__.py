"""The service: intake, state, scheduling, executors, registry, gate, reports
and the client API. Importing it never imports PyTorch; only the worker
reaches the ML core.

Importing the package registers its config sections ([service], [executor]).
"""

# Imported for their side effect: each registers its config section.
from piu_engine.service import settings  # noqa: F401
from piu_engine.service.executors import settings as executor_settings  # noqa: F401
