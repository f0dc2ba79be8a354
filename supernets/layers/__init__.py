"""Layers and weight banks: what a supernet is built from.

``elastic`` (linear, embedding, norm, depth), ``attention``, ``conv``: elastic layers that ask
their weight bank for the weight of the active architecture and run one ordinary op.
``banks`` (entangled: slice one shared tensor), ``mos`` with ``arch_router`` (layer- and
neuron-wise mixtures of supernets), ``moe`` with ``moe_space`` and ``routing_metrics``
(token-routed mixture-of-experts FFNs; the token routers are ``archlab.supernets.routers``).
"""

from . import mos  # noqa: F401  (registers the mixture banks mos-layer and mos-neuron)
