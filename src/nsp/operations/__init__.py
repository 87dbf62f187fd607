"""Operation kinds: how each kind of operation is recognised, wired and weighted.

One module per kind (``elementwise``, ``reshape``, ``gather`` (data
movement), ``conv``, ``pooling``, ``linear``, ``matmul``, ``attention``, ``normalization``, ``cat``,
``recurrent``, ``resample``, ``fold`` (unfold/fold) and the ``jacobian`` fallback), each
defining :class:`OperationKind` subclasses; :data:`OPERATIONS` (in :mod:`.base`) lists them, in
the order in which they are asked to claim a call, and fills itself on first use.
``kronecker`` is the algebra of Kronecker-factored 0/1 matrices, ``blocks``
the connectivity blocks built from it, ``windows`` the sliding-window
geometry shared by convolution and pooling.
"""

from nsp._lazy import exports

_NAMES = ["JACOBIAN_LIMIT", "OPERATIONS", "ConnectivityError", "EdgeWeightError", "LinearPart", "Op",
          "OperationKind", "apply_part", "apply_part_transposed", "blocks_for", "classify_function", "classify_method", "classify_module",
          "function_name", "linear_parts", "part_edges", "register"]
__getattr__, __dir__ = exports(__name__, dict.fromkeys(_NAMES, "nsp.operations.base"))

__all__ = list(_NAMES)
