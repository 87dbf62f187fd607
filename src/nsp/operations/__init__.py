"""Operation kinds: how each kind of operation is recognised, wired and weighted.

One module per kind (``elementwise``, ``reshape``, ``gather`` (data
movement), ``conv``, ``pooling``, ``linear``, ``matmul``, ``attention``, ``normalization``, ``cat``,
and the ``jacobian`` fallback), each
registering an :class:`OperationKind` in :data:`OPERATIONS`; the order of the
imports below is the order in which kinds are asked to claim a call.
``kronecker`` is the algebra of Kronecker-factored 0/1 matrices, ``blocks``
the connectivity blocks built from it, ``windows`` the sliding-window
geometry shared by convolution and pooling.
"""

from nsp.operations.base import (JACOBIAN_LIMIT, OPERATIONS, ConnectivityError, EdgeWeightError, LinearPart, Op,
                                 OperationKind, apply_part, blocks_for, classify_function, classify_method,
                                 classify_module, function_name, linear_parts, part_edges, register)
from nsp.operations import (conv, pooling, linear, matmul, attention, reshape, gather,  # noqa: F401,E402
                            normalization, elementwise, cat, jacobian)

__all__ = ["JACOBIAN_LIMIT", "OPERATIONS", "ConnectivityError", "EdgeWeightError", "LinearPart", "Op",
           "OperationKind", "apply_part", "blocks_for", "classify_function", "classify_method", "classify_module",
           "function_name", "linear_parts", "part_edges", "register"]
