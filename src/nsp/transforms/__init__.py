"""Transforms of signals on the neuron graph, registered by type name.

``standard`` (:mod:`.standard`: the causal transform, zeta/Möbius matrices
in :mod:`.zeta` or the Kronecker-factored closure in :mod:`.factored`),
``laplacian`` (:mod:`.laplacian`), ``sem`` (:mod:`.sem`) and ``influence``
(:mod:`.influence`, the max-product closure). The protocol
and the registry (:data:`TRANSFORMS`, filled with the built-in transforms,
in that order, when first read) are in :mod:`.base`.
"""

from nsp._lazy import exports

_NAMES = {"TRANSFORMS": "base", "NotFittedError": "base", "Transform": "base", "make_transform": "base",
          "register_transform": "base", "transform_class": "base", "StandardTransform": "standard",
          "LaplacianTransform": "laplacian", "SemTransform": "sem", "InfluenceTransform": "influence"}
__getattr__, __dir__ = exports(__name__, {name: f"nsp.transforms.{module}" for name, module in _NAMES.items()})

__all__ = list(_NAMES)
