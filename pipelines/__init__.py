"""Ray Data pipelines: event logs -> validated events (+ quarantine) -> per-entity training windows.

Only wiring lives here; the batch functions in :mod:`pipelines.batches` are plain typed
functions of Arrow tables, unit-tested without Ray.
"""
