"""archlab.core: the bottom package. Small utilities every floor may use: the base error
type (``errors``), atomic writes and bounded reads (``io``), the progress bar (``progress``),
statistics for claims with intervals (``stats``), number parsing (``numbers``), code
provenance (``provenance``) and the run folder's layout (``layout``). Imports numpy and scipy
only (tqdm lazily): never torch, optuna or anything above it.
"""
