"""Operation kinds: how each kind of operation is recognised, wired and weighted.

One module per kind (``elementwise``, ``reshape``, ``gather`` (data
movement), ``conv``, ``pooling``, ``linear``, ``matmul``, ``attention``, ``normalization``, ``cat``,
``recurrent``, ``resample``, ``fold`` (unfold/fold) and the ``jacobian`` fallback), each
registering an :class:`OperationKind` in :data:`OPERATIONS`; the order of
``_KINDS`` below is the order in which kinds are asked to claim a call.
``kronecker`` is the algebra of Kronecker-factored 0/1 matrices, ``blocks``
the connectivity blocks built from it, ``windows`` the sliding-window
geometry shared by convolution and pooling.
"""

from nsp._lazy import exports

_KINDS = tuple(f"nsp.operations.{kind}" for kind in (
    "conv", "pooling", "linear", "matmul", "attention", "reshape", "fold", "gather", "normalization", "elementwise",
    "cat", "recurrent", "resample", "jacobian"))
_NAMES = ["JACOBIAN_LIMIT", "OPERATIONS", "ConnectivityError", "EdgeWeightError", "LinearPart", "Op",
          "OperationKind", "apply_part", "blocks_for", "classify_function", "classify_method", "classify_module",
          "function_name", "linear_parts", "part_edges", "register"]
# the first use of a name registers every kind (and imports torch); the submodules alone do not
__getattr__, __dir__ = exports(__name__, dict.fromkeys(_NAMES, "nsp.operations.base"), before=_KINDS)

__all__ = list(_NAMES)
