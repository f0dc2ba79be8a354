"""archlab.core: the bottom package. Small utilities every floor may use (statistics for
claims with intervals, and later errors, atomic writes and progress). Imports numpy and scipy
only: never torch, optuna or anything above it.
"""
