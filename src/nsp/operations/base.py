"""The operation-kind registry: what nsp knows about each kind of operation, in one place per kind.

Tracing meets operations as child modules, torch functions and tensor
methods, and asks the registry which *kind* each one is
(:func:`classify_module`, :func:`classify_function`, :func:`classify_method`):
the first registered :class:`OperationKind` that claims it wins, and what
no kind claims becomes ``"jacobian"`` (connectivity from the Jacobian's
nonzero pattern). The graph builder then asks the kind for

- its connectivity blocks (:meth:`OperationKind.blocks`: Kronecker-factored
  where the operation is separable), and
- its linear part, the edge weights (:meth:`OperationKind.linear_parts`),
  which the sem transform applies (:func:`apply_part`) and the weighted
  adjacency lists (:func:`part_edges`).

Adding an operation is one module that subclasses :class:`OperationKind`
and calls :func:`register` (see ``docs/architecture.md``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from math import prod
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from nsp.operations.blocks import Coo, Kron
from nsp.operations.mode_products import Backend, apply_term
from nsp.errors import ConnectivityError, EdgeWeightError
from nsp.registry import Registry

if TYPE_CHECKING:                # annotations only; torch loads where a function needs it
    import torch

#: Largest Jacobian (output neurons x input neurons) the fallback may form.
JACOBIAN_LIMIT = 1 << 24


@dataclass(frozen=True, eq=False)
class Op:
    """One recorded operation as the graph builder sees it.

    ``in_shapes`` and ``out_shape`` are the full tensor shapes (batch axis
    included) of the operation's tensor inputs, one per parent layer, and of
    its output. ``evaluate(inputs, randomize)`` recomputes the output from
    input tensors of those shapes; with ``randomize`` the operation's
    parameters are replaced by seeded random values (for structural Jacobian
    patterns that must not depend on the trained weights). ``params`` may
    hold tensors (weights); the layer table keeps only their plain part.
    ``module``: the module, where the op calls one on its single input, or
    a module wrapping the call of a Python function (torch.fx keeps
    functions registered with ``torch.fx.wrap`` whole); an op without a
    rule is then wired from its traced internals.
    """

    kind: str
    path: str
    params: dict = field(default_factory=dict)
    in_shapes: tuple = ()
    out_shape: tuple = ()
    evaluate: Callable[[Sequence[torch.Tensor], bool], torch.Tensor] | None = None
    module: Any = None      # the module called with the one input alone, where the op is such a call


@dataclass
class LinearPart:
    """The coefficients with which a layer depends linearly on one parent: the edge weights of a block.

    ``kind`` is ``"rows"`` (every structural edge into output ``o`` weighs
    ``arrays['r'][o]``, ``r`` broadcastable to the output shape) or a part
    kind an operation registered (``conv``, ``linear``, ``max``, ...).
    ``params`` is JSON-able; a ``fallback`` entry says why unit weights
    were used.
    """

    kind: str
    arrays: dict = field(default_factory=dict)   # name -> numpy array
    params: dict = field(default_factory=dict)   # JSON-able

    def to_json(self) -> str:
        return json.dumps(self.params, sort_keys=True)

    @classmethod
    def rows(cls, r, **params) -> "LinearPart":
        """A ``rows`` part with ``r`` shrunk to its smallest broadcastable shape."""
        r = np.asarray(r, dtype=np.float64)
        for axis in range(r.ndim):
            first = r.take([0], axis=axis)
            if np.array_equal(r, np.broadcast_to(first, r.shape)):
                r = first
        if r.size == 1:
            r = r.reshape(())
        return cls("rows", {"r": np.array(r, dtype=np.float64, order="C")}, params)


def unit_parts(op: Op, **params) -> list[LinearPart]:
    """Weight 1 on every edge, one part per input."""
    return [LinearPart.rows(1.0, **params) for _ in op.in_shapes]


class OperationKind:
    """Everything nsp knows about one kind of operation. Subclass, fill in, :func:`register`.

    Class attributes: ``name`` (the kind, as stored in layer tables),
    ``modules`` (module classes it claims), ``functions`` (torch functions),
    ``methods`` (tensor method names), ``single_input`` (the rule reads only
    the first tensor argument: a call whose other arguments depend on the
    input goes to the Jacobian fallback), ``sequence_input`` (the tensors
    come as one sequence argument, as for ``torch.cat``), ``part_kinds``
    (the :class:`LinearPart` kinds its :meth:`apply_part` and
    :meth:`part_edges` handle), ``positional`` (the tracer adds
    ``params['roles']``: for each parent, the argument positions it fills),
    ``pieces`` (for a call that returns a tuple: the items the rule
    describes; the tracer adds ``params['piece']``, the item recorded).
    """

    name: str = ""
    modules: tuple = ()
    functions: tuple = ()
    methods: tuple = ()
    single_input: bool = False
    sequence_input: bool = False
    positional: bool = False
    pieces: tuple = ()
    part_kinds: tuple = ()
    #: True where ``apply_part`` is only piecewise linear in its input (it picks, per sample, which edges
    #: count: max pooling); the recorded edge list is the part's linearisation at the recorded input
    piecewise: bool = False

    # -- recognising calls: parameters, or None when the call is not of this kind ------------

    def module_params(self, module: torch.nn.Module) -> dict | None:
        return {} if self.modules and isinstance(module, self.modules) else None

    def call_params(self, module: torch.nn.Module, args: Sequence, kwargs: dict) -> dict | None:
        """Parameters of a call of ``module`` with these arguments (default: :meth:`module_params`)."""
        return self.module_params(module)

    def function_params(self, target: Any, args: Sequence, kwargs: dict) -> dict | None:
        return {} if target in self.functions else None

    def method_params(self, name: str, args: Sequence, kwargs: dict) -> dict | None:
        return {} if name in self.methods else None

    def function_label(self, target: Any) -> str | None:
        """A readable name for one of this kind's functions whose ``__name__`` says nothing."""
        return None

    # -- the graph ---------------------------------------------------------------------

    def blocks(self, op: Op, inputs: Sequence[torch.Tensor], incl: bool, limit: int) -> list:
        """One connectivity block per input (``Kron`` where separable); ``inputs`` are the recorded tensors."""
        raise NotImplementedError

    def linear_parts(self, op: Op, inputs: Sequence[torch.Tensor], blocks: list) -> list[LinearPart]:
        """The linear part for each input (default: weight 1 on every edge)."""
        return unit_parts(op)

    # -- the kind's own linear parts ------------------------------------------------------

    def apply_part(self, part: LinearPart, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for a part of one of ``part_kinds``; ``x``: float64, (batch, *input shape)."""
        raise NotImplementedError

    def part_edges(self, part: LinearPart, in_shape: tuple, out_shape: tuple) -> tuple:
        """``(rows, cols, values)`` of a part of one of ``part_kinds`` (duplicates are summed)."""
        raise NotImplementedError


FALLBACK = "jacobian"
#: the built-in kinds, in the order they are asked to claim a call (the fallback last)
BUILT_IN = tuple(f"nsp.operations.{spec}" for spec in (
    "conv:Conv", "pooling:MaxPool", "pooling:AvgPool", "pooling:AdaptiveAvgPool", "pooling:AdaptiveMaxPool",
    "linear:Linear", "matmul:Matmul", "matmul:Einsum", "attention:Attention", "attention:MultiheadAttention",
    "reshape:Reshape", "fold:Unfold", "fold:Fold", "gather:Gather",
    "elementwise:Elementwise", "normalization:Reduce", "cat:Cat", "cat:Stack", "recurrent:Recurrent", "resample:Interpolate",
    "jacobian:Jacobian"))
#: kind name -> OperationKind: the built-in kinds in the order of BUILT_IN, then the added ones in the order
#: they were added (the fallback claims nothing, so every kind is asked before a call falls back)
OPERATIONS = Registry("operation kind", BUILT_IN, prepare=lambda kind: kind() if isinstance(kind, type) else kind,
                      error=ConnectivityError)


def register(kind: OperationKind | type) -> OperationKind | type:
    """Register an operation kind (an instance, or a class that is instantiated); usable as a decorator."""
    return OPERATIONS.add(kind)


def _classify(method: str, *args) -> tuple[str, dict]:
    for kind in OPERATIONS.values():
        params = getattr(kind, method)(*args)
        if params is not None:
            return kind.name, params
    return FALLBACK, {}


def classify_module(module, args: Sequence = (), kwargs: dict | None = None) -> tuple[str, dict]:
    """Kind and rule parameters of a module (called with ``args`` and ``kwargs``, values, where known). A
    module whose ``forward`` is not torch's own (a subclass that overrides it computes something else:
    padding or weights made in ``forward``, a norm over another axis) gets no rule of its parent class:
    it is the fallback's."""
    forward = getattr(type(module), "forward", None)
    kwargs = kwargs or {}
    if getattr(forward, "__module__", "").startswith("torch."):
        return _classify("call_params", module, args, kwargs)
    for kind in _naming(module):             # a forward of its own: only a kind naming that class claims it
        params = kind.call_params(module, args, kwargs)
        if params is not None:
            return kind.name, params
    return FALLBACK, {}


def _naming(module) -> list[OperationKind]:
    """The kinds that name the class of ``module`` (with the same ``forward``) in their ``modules``."""
    forward = getattr(type(module), "forward", None)
    return [kind for kind in OPERATIONS.values()
            if any(isinstance(module, c) and c.forward is forward for c in kind.modules)]


def named_module(module) -> bool:
    """Whether a kind names the class of ``module``: tracing keeps such a module whole (torch.fx would
    otherwise trace into a module of a user's own class that a user's kind is written for)."""
    return bool(_naming(module))


def classify_function(target, args: Sequence, kwargs: dict) -> tuple[str, dict]:
    """Kind and rule parameters of a call_function target (``args`` hold values)."""
    return _classify("function_params", target, args, kwargs)


def classify_method(name: str, args: Sequence, kwargs: dict) -> tuple[str, dict]:
    """Kind and rule parameters of a call_method (``args[0]`` is the tensor)."""
    return _classify("method_params", name, args, kwargs)


def kind(name: str) -> OperationKind:
    return OPERATIONS.lookup(name)


def blocks_for(op: Op, inputs: Sequence[torch.Tensor], incl: bool = True, limit: int = JACOBIAN_LIMIT) -> list:
    """Connectivity blocks of ``op``, one per parent, in the order of ``op.in_shapes``, shapes checked."""
    blocks = kind(op.kind).blocks(op, inputs, incl, limit)
    expected = prod(op.out_shape)
    for block, shape in zip(blocks, op.in_shapes):
        if block.shape != (expected, prod(shape)):
            raise ConnectivityError(
                f"operation {op.path!r} ({op.kind}): the rule gave a {block.shape} block for input shape "
                f"{tuple(shape)} and output shape {tuple(op.out_shape)}; the layer's parameters do not match "
                f"its recorded shapes")
    return blocks


def linear_parts(op: Op, inputs: Sequence[torch.Tensor], blocks: list) -> list[LinearPart]:
    """The linear parts of ``op``; :class:`EdgeWeightError` (with the cause) where they cannot be derived."""
    try:
        return kind(op.kind).linear_parts(op, inputs, blocks)
    except Exception as err:
        raise EdgeWeightError(f"{type(err).__name__}: {err}") from err


# --- applying linear parts ---------------------------------------------------------------------------

def apply_part(part: LinearPart, block, x: np.ndarray, in_shape: tuple, out_shape: tuple, device=None,
               recorded: bool = False) -> np.ndarray:
    """The part's contribution ``A[L, p] x`` for a batch ``x`` of shape (B, size of the parent).

    ``in_shape`` and ``out_shape`` are the operation's full shapes as recorded for one sample: the batch
    axis of size 1 is among them, first unless a permute moved it. ``device``: a torch device for the
    tensor work (None: the CPU). ``recorded``: a piecewise linear part (max pooling) keeps the recorded
    edges (its linearisation at the recorded input) instead of taking each sample's own. Returns (B, size
    of the layer), float64.
    """
    batch = x.shape[0]
    if part.kind == "rows":
        y = block_product(block, x, device).reshape((batch,) + tuple(out_shape))
        return (y * part.arrays["r"]).reshape(batch, -1)       # r: a scalar or of the full output shape
    owner = _part_owner(part)
    if recorded and owner.piecewise:
        return np.asarray((_edge_matrix(owner, part, in_shape, out_shape) @ x.T).T)
    import torch
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    t = t.to(device) if device is not None else t
    with torch.no_grad():
        if len(in_shape) and in_shape[0] == 1:                 # samples stacked on the batch axis
            y = owner.apply_part(part, t.reshape((batch,) + tuple(in_shape[1:]))).reshape(batch, -1)
        else:                                                  # the batch axis was moved: one sample at a time
            y = torch.stack([owner.apply_part(part, row.reshape(tuple(in_shape))).reshape(-1) for row in t])
    return y.cpu().numpy()


def apply_part_transposed(part: LinearPart, block, y: np.ndarray, in_shape: tuple, out_shape: tuple,
                          device=None, at: np.ndarray | None = None) -> np.ndarray:
    """The transposed part, ``A[L, p]^T y`` for a batch ``y`` of shape (B, size of the layer): what each
    parent neuron passes on to the layer's neurons weighted by ``y`` (backward passes, contributions).

    A ``rows`` part is the transposed block after the row scales; every other part is the gradient of its
    own ``apply_part`` taken by torch's autograd, so a kind needs no transposed code of its own. A kind
    whose ``apply_part`` is only piecewise linear (``piecewise``: max pooling, which takes each sample's
    own winners) is linearised at ``at`` (B, size of the parent: the parent's values of each row's sample)
    or, without ``at``, taken as its recorded edge list. Returns (B, size of the parent), float64.
    """
    batch = y.shape[0]
    if part.kind == "rows":
        scaled = (y.reshape((batch,) + tuple(out_shape)) * part.arrays["r"]).reshape(batch, -1)
        return block_product(transposed(block), scaled, device)
    owner = _part_owner(part)
    if owner.piecewise and at is None:
        return np.asarray((_edge_matrix(owner, part, in_shape, out_shape).T @ y.T).T)
    import torch
    g = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float64))
    g = g.to(device) if device is not None else g
    points = torch.zeros((batch, prod(in_shape)), dtype=torch.float64) if at is None else \
        torch.from_numpy(np.ascontiguousarray(at, dtype=np.float64))
    points = points.to(g.device)
    stacked = len(in_shape) and in_shape[0] == 1               # samples stacked on the batch axis
    shape = (batch,) + tuple(in_shape[1:]) if stacked else tuple(in_shape)
    pairs = [(points.reshape(shape), g)] if stacked else \
        [(x.reshape(shape), row) for x, row in zip(points, g)]  # the batch axis was moved: a sample at a time
    grads = []
    with torch.enable_grad():
        for x, cotangent in pairs:
            x = x.clone().requires_grad_(True)
            out = owner.apply_part(part, x)
            grad, = torch.autograd.grad(out, x, cotangent.reshape(out.shape), allow_unused=True)
            grads.append((torch.zeros_like(x) if grad is None else grad).reshape(-1 if not stacked else (batch, -1)))
    out = grads[0] if stacked else torch.stack(grads)
    return out.detach().cpu().numpy()


def _edge_matrix(owner: OperationKind, part: LinearPart, in_shape: tuple, out_shape: tuple) -> sp.csr_matrix:
    rows, cols, values = owner.part_edges(part, in_shape, out_shape)
    return sp.csr_matrix((values, (rows, cols)), shape=(prod(out_shape), prod(in_shape)))


def transposed(block):
    """The block with inputs as rows (a :class:`Kron` transposes its factors, a :class:`Coo` its coordinates)."""
    if isinstance(block, Kron):
        return block.T
    rows, cols = block.coo()
    return Coo(cols, rows, (block.shape[1], block.shape[0]))


def part_edges(part: LinearPart, block, in_shape: tuple, out_shape: tuple) -> tuple:
    """``(rows, cols, values)`` of the part's weighted edges (duplicates are to be summed)."""
    if part.kind == "rows":
        rows, cols = block.coo()
        r = np.broadcast_to(part.arrays["r"], tuple(out_shape)).reshape(-1)
        return rows, cols, r[rows]
    return _part_owner(part).part_edges(part, in_shape, out_shape)


def _part_owner(part: LinearPart) -> OperationKind:
    owners = {part_kind: kind for kind in OPERATIONS.values() for part_kind in kind.part_kinds}
    if part.kind not in owners:
        raise EdgeWeightError(f"unknown linear part {part.kind!r}; known: rows, {', '.join(owners)}")
    return owners[part.kind]


def block_product(block, x: np.ndarray, device=None) -> np.ndarray:
    """``B x`` for the 0/1 block ``B`` (Kronecker factors by mode products, else a sparse product).

    A Kronecker block is applied on its factors' axes, which need not be the input tensor's (a collapsed
    container, a reshape): only the total size must agree.
    """
    batch = x.shape[0]
    if isinstance(block, Kron):
        backend = Backend(device)
        cols = tuple(f.shape[1] for f in block.factors)   # the block's own axes, not necessarily the tensor's
        xs = backend.asarray(np.ascontiguousarray(x).reshape((batch,) + cols))
        y = backend.tonumpy(apply_term(backend, xs, block.factors, {}))
        rows = tuple(f.shape[0] for f in block.factors)
        return np.broadcast_to(y, (batch,) + rows).reshape(batch, -1)
    rows, cols = block.coo()
    matrix = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=block.shape)
    return np.asarray((matrix @ x.T).T)


def bind(names: Sequence[str], args: Sequence, kwargs: dict, **defaults) -> dict:
    """Call arguments bound to parameter names (positional ``args`` in the order of ``names``)."""
    bound = dict(defaults)
    bound.update(zip(names, args))
    bound.update(kwargs)
    return bound


def function_name(target: Any) -> str:
    """A readable name for a call_function target (torch's boolean-dispatch wrappers are all called 'fn')."""
    name = getattr(target, "__name__", None) or repr(target)
    if name == "fn":
        for kind in OPERATIONS.values():
            label = kind.function_label(target)
            if label:
                return label
    return name
