"""Transforms of signals on the neuron graph, registered by type name.

``standard`` (:mod:`.standard`: the causal transform, zeta/Möbius matrices
in :mod:`.zeta` or the Kronecker-factored closure in :mod:`.factored`),
``laplacian`` (:mod:`.laplacian`) and ``sem`` (:mod:`.sem`). The protocol
and the registry are in :mod:`.base`; importing this package registers the
built-in transforms in this order.
"""

from nsp.transforms.base import TRANSFORMS, NotFittedError, Transform, make_transform, register_transform, transform_class
from nsp.transforms.standard import StandardTransform
from nsp.transforms.laplacian import LaplacianTransform
from nsp.transforms.sem import SemTransform

__all__ = ["TRANSFORMS", "NotFittedError", "Transform", "make_transform", "register_transform", "transform_class",
           "StandardTransform", "LaplacianTransform", "SemTransform"]
