"""Transforms of signals on the neuron graph, registered by type name.

``standard`` (:mod:`.standard`: the causal transform, zeta/Möbius matrices
in :mod:`.zeta` or the Kronecker-factored closure in :mod:`.factored`),
``laplacian`` (:mod:`.laplacian`) and ``sem`` (:mod:`.sem`). The protocol
and the registry are in :mod:`.base`; the built-in transforms register, in
this order, on the first use of one of this package's names.
"""

from nsp._lazy import exports

_NAMES = {"TRANSFORMS": "base", "NotFittedError": "base", "Transform": "base", "make_transform": "base",
          "register_transform": "base", "transform_class": "base", "StandardTransform": "standard",
          "LaplacianTransform": "laplacian", "SemTransform": "sem"}
# the first use of a name registers the built-in transforms, in this order (``base.BUILT_IN``)
__getattr__, __dir__ = exports(__name__, {name: f"nsp.transforms.{module}" for name, module in _NAMES.items()},
                               before=("nsp.transforms.standard", "nsp.transforms.laplacian", "nsp.transforms.sem"))

__all__ = list(_NAMES)
