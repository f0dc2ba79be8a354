"""Soft architectures for gradient-based search.

``ops``: per-choice probabilities turn an elastic layer into a differentiable mixed op (the
bank mixes zero-padded slices, TangleNAS); ``methods``: the architecture-parameter methods
(DARTS, GDAS, DrNAS, TangleNAS) over them; ``memory``: the peak-memory comparison of an
entangled mixed op with one-candidate-per-choice mixed ops. The families' soft appliers live
with the families (``archlab.supernets.families.soft_appliers``).
"""
