"""Per-person proof of forgetting: an offline LiRA audit against a pool of
reference models that never saw each person.

This package deliberately imports nothing at package level, so the light
modules (``result``, ``manifest``, ``gap``: standard library only) can be read
by the service and the TUI without loading PyTorch or numpy.

- ``plan``:      which identities each reference model trains on, and the cache keys.
- ``pool``:      train one reference model (``train_pool_model``, a unit a parallel
                 executor can run), build a whole pool resumably (``build_pool``),
                 reopen it (``load_pool``).
- ``reference``: ``ReferencePool``, the pool as read back from disk (scores, members).
- ``scores``:    the target model's logit-scaled confidence per person.
- ``lira``:      each person's out-model Gaussian and standardised statistic z.
- ``calibrate``: thresholds and p-values fitted on never-seen people's z.
- ``stats``:     set-level figures (flagged fraction, AUC, TPR at low FPR) with bootstrap intervals.
- ``audit``:     ``audit_request`` / ``audit_model``, returning an ``AuditResult``.
- ``result``:    the JSON-friendly result types.
- ``gap``:       the gap to retrain (SalUn / LoTUS).
"""
