"""archlab.spaces: the search-space DSL.

Define a space from parameters (``Choice``, ``IntRange``, ``FloatRange``) and repeated
blocks (``PerLayer``); sample, validate, count, enumerate, encode and suggest (Optuna)
architectures (``Arch``). Imports numpy only.
"""

from . import library
from .arch import Arch
from .errors import ArchlabError, SpaceError
from .optuna_bridge import SuggestTrial
from .params import Choice, FloatRange, IntRange, Param, PerLayer
from .space import Constraint, SearchSpace

__all__ = [
    "Arch",
    "ArchlabError",
    "Choice",
    "Constraint",
    "FloatRange",
    "IntRange",
    "Param",
    "PerLayer",
    "SearchSpace",
    "SpaceError",
    "SuggestTrial",
    "library",
]
