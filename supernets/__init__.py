"""archlab.supernets: weight-sharing supernets over archlab search spaces.

Elastic layers (``ElasticLinear``, ``ElasticEmbedding``, ``ElasticLayerNorm``,
``ElasticConv2d``, ``ElasticBatchNorm2d``, ``ElasticSelfAttention``, ``ElasticDepth``) get
their weights from weight banks (``archlab.supernets.layers.banks``) and run one ordinary op each;
model families (``TransformerLM``, ``ConvNet``, ``MLPNet``) build on them; ``net.extract``
gives a plain torch module, ``archlab.supernets.export`` saves and loads it.
"""

from .base import Supernet, pick_device
from .families import FAMILIES, ConvNet, MLPNet, TransformerLM, make_supernet, register_family
from .families.convnet_plain import PlainConvNet
from .families.mlp_plain import PlainMLP
from .families.plain import PLAIN, PlainSubnet, build_plain, register_plain
from .families.transformer_plain import PlainTransformerLM
from .layers.attention import ElasticSelfAttention, PlainSelfAttention
from .layers.banks import ROLES, BankFactory, EntangledBank, WeightBank, register_bank
from .layers.conv import ElasticBatchNorm2d, ElasticConv2d, recalibrate_batchnorm
from .layers.elastic import (
    ACTIVATIONS,
    ElasticDepth,
    ElasticEmbedding,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticModule,
)

__all__ = [
    "ACTIVATIONS",
    "FAMILIES",
    "PLAIN",
    "ROLES",
    "BankFactory",
    "ConvNet",
    "ElasticBatchNorm2d",
    "ElasticConv2d",
    "ElasticDepth",
    "ElasticEmbedding",
    "ElasticLayerNorm",
    "ElasticLinear",
    "ElasticModule",
    "ElasticSelfAttention",
    "EntangledBank",
    "MLPNet",
    "PlainConvNet",
    "PlainMLP",
    "PlainSelfAttention",
    "PlainSubnet",
    "PlainTransformerLM",
    "Supernet",
    "TransformerLM",
    "WeightBank",
    "build_plain",
    "make_supernet",
    "pick_device",
    "recalibrate_batchnorm",
    "register_bank",
    "register_family",
    "register_plain",
]
