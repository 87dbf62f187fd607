"""The transform protocol and the registry of transforms by type name.

A transform follows the scikit-learn conventions: the constructor only
stores its options (``get_params()`` returns them), ``fit(graph)`` returns
the transform itself, and ``transform`` / ``inverse_transform`` map
``(samples, nodes)`` float64 arrays (or one vector) both ways, with the
same keyword arguments for every transform (``device``: a torch device to
compute on, checked by :func:`nsp.devices.torch_device`; None = NumPy/SciPy
on the CPU). Using a transform before ``fit`` raises :class:`NotFittedError`.

:data:`TRANSFORMS` maps each ``type`` name to its class: the built-in ones
(``BUILT_IN``, in that order), then those added with :func:`register_transform`
(by a plugin or a user's module). The CLI, the storage layer, the plots,
``NNGraph``, ``OutputLoader`` and the pipeline config all look transforms up
there. A transform's HDF5 encoding is registered in :mod:`nsp.storage`.
"""

from __future__ import annotations

import inspect

import numpy as np

from nsp import memory
from nsp.devices import torch_device
from nsp.errors import InputError, NotFittedError, RegistryError
from nsp.registry import Registry
from nsp.transforms import sampling

#: entries of closure rows held at once by ``contributions`` (samples are taken in chunks of this size)
CHUNK = 1 << 25

#: the built-in transforms, in their order
BUILT_IN = ("nsp.transforms.standard:StandardTransform", "nsp.transforms.laplacian:LaplacianTransform",
            "nsp.transforms.sem:SemTransform", "nsp.transforms.influence:InfluenceTransform")


def _checked_class(cls: type) -> type:
    if not (isinstance(cls, type) and issubclass(cls, Transform)):
        raise RegistryError(f"{cls!r} is not a subclass of nsp.transforms.Transform")
    cls.label = cls.__dict__.get("label") or cls.type
    return cls


def register_transform(cls: type) -> type:
    """Class decorator: make ``cls`` (a :class:`Transform` subclass) available under ``cls.type``."""
    return TRANSFORMS.add(cls)


def transform_class(type: str) -> type:
    return TRANSFORMS.lookup(type)


def make_transform(type: str = "standard", **options):
    """An unfitted transform of the given type; ``options`` go to its constructor."""
    cls = transform_class(type)
    try:
        return cls(**options)
    except TypeError as err:
        accepted = ", ".join(inspect.signature(cls.__init__).parameters.keys() - {"self"}) or "none"
        raise InputError(f"bad options for the {type} transform ({err}); accepted options: {accepted}") from None


class Transform:
    """Base class of transforms (see the module docstring). Subclasses set ``type`` and ``description``
    and implement ``fit``, ``_transform``, ``_inverse``, ``fitted`` and ``n`` / ``n_coefficients``."""

    #: the registry name
    type: str = ""
    #: one line saying what a coefficient is (used on figures)
    description: str = ""
    #: the name in titles
    label: str = ""
    #: False where coefficient k is not tied to node k (it is only drawn in the layer layout)
    coefficients_at_nodes: bool = True
    #: JSON schema of the constructor's options (the pipeline config validates against it)
    options_schema: dict = {"type": "object"}
    #: per-coefficient labels where coefficients are not nodes (the Laplacian's eigenvalues)
    eigenvalues = None
    #: SHA-256 of the weights its graph came from, as recorded in the file it was read from (None: not known);
    #: the ``transform`` stage refuses activations of other weights
    weights_sha256 = None

    def get_params(self) -> dict:
        """The constructor's options, as stored."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    @property
    def options(self) -> dict:
        return self.get_params()

    def fit(self, graph) -> "Transform":
        raise NotImplementedError

    @property
    def fitted(self) -> bool:
        raise NotImplementedError

    @property
    def n(self) -> int:
        """Number of nodes (the length of a signal)."""
        raise NotImplementedError

    @property
    def n_coefficients(self) -> int:
        return self.n

    def transform(self, signals, device=None) -> np.ndarray:
        """Spectra of signals of shape (samples, nodes) or (nodes,)."""
        x, single = as_batch(signals, self._checked().n, "signals")
        out = self._transform(x, torch_device(device))
        return out[0] if single else out

    def inverse_transform(self, spectra, device=None) -> np.ndarray:
        """Signals from spectra of shape (samples, coefficients) or (coefficients,)."""
        c, single = as_batch(spectra, self._checked().n_coefficients, "spectra")
        out = self._inverse(c, torch_device(device))
        return out[0] if single else out

    def synthesize(self, spectra, device=None) -> np.ndarray:
        """The linear synthesis ``W c`` whose rows :meth:`synthesis_rows` gives: ``inverse_transform``, except
        where the inverse is only piecewise linear (sem with max pooling takes each signal's own winners;
        here the graph's recorded ones)."""
        c, single = as_batch(spectra, self._checked().n_coefficients, "spectra")
        out = self._synthesize(c, torch_device(device))
        return out[0] if single else out

    def _synthesize(self, c: np.ndarray, device) -> np.ndarray:
        return self._inverse(c, device)

    def filter(self, signals, keep, device=None) -> np.ndarray:
        """The signals synthesised from some of their coefficients only: ``inverse_transform(keep * c)`` with
        ``c = transform(signals)``; for the causal transforms, ``W (keep * c)``, what the pattern would be
        with only the kept neurons' innovations.

        ``keep``: a boolean mask over the coefficients, ``(coefficients,)`` or one row per sample; an int
        ``k``, the ``k`` largest-magnitude coefficients of each sample (ties: the first); or a list of layer
        names or indices, for a transform whose coefficients are its graph's nodes in layer order
        (:meth:`layer_offsets`). Keeping everything gives the signals back.
        """
        c, single = as_batch(signals, self._checked().n, "signals")
        c = self.transform(c, device=device)
        mask = self._keep_mask(keep, c)
        out = self.inverse_transform(np.where(mask, c, 0.0), device=device)
        return out[0] if single else out

    def shift(self, signals, node: int, device=None) -> np.ndarray:
        """The causal shift by ``node``: the part of each signal caused by ``node``'s ancestors (itself
        included), ``W (a * c)`` with ``a_y = 1`` where ``W[node, y] != 0`` (``y`` reaches ``node``). Its
        eigenvectors are the columns of ``W``; on a lattice, ``shift(s, q)[x] = s[meet(x, q)]``."""
        if not isinstance(node, (int, np.integer)) or isinstance(node, (bool, np.bool_)):
            raise InputError(f"shift: node must be one node index; got {node!r}")
        return self.filter(signals, self._ancestors(self._targets(node), device)[0].astype(bool), device=device)

    def convolve(self, signals, taps, device=None) -> np.ndarray:
        """The causal convolution with the filter ``taps`` (nodes,): ``sum over q of taps[q] shift(s, q)``,
        computed in the spectrum as ``W (h * c)`` with the frequency response ``h_y = sum of taps[q] over
        the nodes q that y reaches`` (:meth:`frequency_response`)."""
        c, single = as_batch(signals, self._checked().n, "signals")
        spectrum = self.transform(c, device=device) * self.frequency_response(taps, device)
        out = self.inverse_transform(spectrum, device=device)
        return out[0] if single else out

    def frequency_response(self, taps, device=None) -> np.ndarray:
        """``h_y = sum over q with W[q, y] != 0 of taps[q]``: the eigenvalue of the convolution with ``taps``
        on the basis vector ``W[:, y]``."""
        taps = as_batch(taps, self._checked().n, "taps")[0][0]
        used = np.flatnonzero(taps)
        response = np.zeros(self.n_coefficients)
        step = max(1, CHUNK // max(1, self.n_coefficients))
        for a in range(0, used.size, step):
            response += taps[used[a:a + step]] @ self._ancestors(used[a:a + step], device)
        return response

    def _ancestors(self, index: np.ndarray, device) -> np.ndarray:
        if not self.coefficients_at_nodes or self.n_coefficients != self.n:
            raise InputError(f"the causal shift needs coefficients at the nodes; the {self.type} transform's are not")
        return (self.synthesis_rows(index, device) != 0).astype(np.float64)

    def contributions(self, signals, targets, per_layer: bool = False, device=None) -> np.ndarray:
        """How much each coefficient adds to each target node: ``W[y, x] * c_x`` for the synthesis ``s = W c``,
        shape (samples, targets, coefficients) (or (targets, coefficients) for one signal). For the causal
        transforms the coefficients are the nodes, and ``W[y, x] c_x`` is the share of node ``x``'s cause in
        node ``y``. Summed over the coefficients it gives ``signals[:, targets]`` (completeness: exactly
        where the coefficients are exact, to rounding otherwise; for a partial Laplacian basis, the
        projection onto it).

        ``targets``: a node index, a list of them, or a layer name (all its nodes, e.g. the logits).
        ``per_layer``: sum each layer's nodes instead, (samples, targets, layers) in the order of
        :meth:`layer_offsets` (which layers' causes made the target). The rows of ``W`` come from one
        backward pass per target (:meth:`synthesis_rows`); ``W`` itself is never formed.
        """
        s, single = as_batch(signals, self._checked().n, "signals")
        index = self._targets(targets)
        offsets = self._layout("per_layer=True")[1] if per_layer else None
        width = len(offsets) - 1 if per_layer else self.n_coefficients
        memory.check(8 * (s.shape[0] * index.size * width + 2 * CHUNK + 2 * s.size),
                     f"contributions of {s.shape[0]:,} samples to {index.size:,} targets over {width:,} "
                     f"{'layers' if per_layer else 'nodes'}",
                     "Ask for fewer samples or targets at once, or for per_layer=True.")
        c = self.transform(s, device=device)
        out = np.empty((s.shape[0], index.size, width))
        step = max(1, CHUNK // (index.size * self.n))
        for a in range(0, s.shape[0], step):
            rows = self.synthesis_rows(index, device, at=s[a:a + step])   # (samples, targets, coefficients)
            shares = rows * c[a:a + step, None, :]
            if per_layer:
                for layer, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:])):
                    out[a:a + step, :, layer] = shares[:, :, lo:hi].sum(axis=2)
            else:
                out[a:a + step] = shares
        return out[0] if single else out

    def reconstruct(self, values, observed, sparsity: int, method: str = "omp", alpha: float | None = None,
                    return_coefficients: bool = False, device=None):
        """The whole pattern from its values at the ``observed`` nodes, assuming at most ``sparsity``
        non-zero coefficients: ``(samples, nodes)`` (with ``return_coefficients``, ``(patterns,
        coefficients)``).

        ``values``: (samples, observed nodes) or (samples, nodes) (the observed columns are read), or one
        row; ``observed``: a boolean mask over the nodes or node indices; ``method``: ``'omp'`` (greedy
        pursuit with a least-squares refit), ``'lasso'`` (the l1 path down to the penalty ``alpha``, default 0,
        or to ``sparsity`` causes) or ``'lowpass'`` (least squares on the first ``sparsity`` coefficients: band-
        limited interpolation for the Laplacian). Warns (:class:`nsp.transforms.sampling.ReconstructionWarning`)
        where the observed rows cannot determine the answer. The pattern is :meth:`synthesize`'s ``W c``: for
        sem with max pooling, the network linearised at the sample the graph was recorded with.
        """
        patterns, coefficients = sampling.reconstruct(self._checked(), values, observed, sparsity, method, alpha,
                                                      device)
        return (patterns, coefficients) if return_coefficients else patterns

    def synthesis_rows(self, targets, device=None, at=None) -> np.ndarray:
        """Rows ``W[targets, :]`` of the synthesis matrix (``s = W c``), shape (targets, coefficients); for
        the causal transforms, one backward pass per target through the closure. ``at``: signals (samples,
        nodes) where ``W`` depends on the signal (max pooling in sem); the rows are then per sample,
        (samples, targets, coefficients). A transform without a linear synthesis does not implement it."""
        raise InputError(f"the {self.type} transform has no linear synthesis s = W c to take rows of "
                         f"(contributions and reconstruction need one: standard, sem, influence, laplacian)")

    def _targets(self, targets) -> np.ndarray:
        n = self.n
        if isinstance(targets, str):
            names, offsets = self._layout(f"targets={targets!r}")
            if targets not in names:
                raise InputError(f"targets: no layer {targets!r}; layers: {', '.join(map(str, names))}")
            i = names.index(targets)
            return np.arange(offsets[i], offsets[i + 1])
        index = np.atleast_1d(np.asarray(targets))
        if index.ndim != 1 or index.size == 0 or index.dtype.kind not in "iu":
            raise InputError(f"targets must be a node index, a non-empty list of node indices or a layer name; "
                             f"got {targets!r}")
        if index.min() < 0 or index.max() >= n:
            raise InputError(f"targets: node {int(index.min() if index.min() < 0 else index.max())} outside "
                             f"0..{n - 1}")
        return index.astype(np.int64)

    def _layout(self, what: str) -> tuple:
        layout = self.layer_offsets()
        if layout is None:
            raise InputError(f"{what}: this {self.type} transform does not know its graph's layers (fit it on a "
                             f"graph core)")
        return layout

    def layer_offsets(self) -> tuple | None:
        """(layer names, offsets) of the coefficients where they are the graph's nodes layer by layer, else
        None (the default; the causal transforms fitted on a graph core say)."""
        return None

    def _keep_mask(self, keep, c: np.ndarray) -> np.ndarray:
        width = c.shape[1]
        if isinstance(keep, (int, np.integer)) and not isinstance(keep, (bool, np.bool_)):
            if not 0 <= keep <= width:
                raise InputError(f"keep={keep}: the number of largest coefficients kept is 0..{width}")
            mask = np.zeros(c.shape, bool)
            top = np.argsort(-np.abs(c), axis=1, kind="stable")[:, :int(keep)]
            np.put_along_axis(mask, top, True, axis=1)
            return mask
        if isinstance(keep, (list, tuple)) and all(isinstance(x, (str, int, np.integer)) for x in keep):
            names, offsets = self._layout(f"keep={list(keep)!r}")
            mask = np.zeros(width, bool)
            for layer in keep:
                if isinstance(layer, str) and layer not in names:
                    raise InputError(f"keep: no layer {layer!r}; layers: {', '.join(map(str, names))}")
                i = names.index(layer) if isinstance(layer, str) else int(layer)
                if not 0 <= i < len(names):
                    raise InputError(f"keep: layer index {i} outside 0..{len(names) - 1}")
                mask[offsets[i]:offsets[i + 1]] = True
            return np.broadcast_to(mask, c.shape)
        mask = np.asarray(keep)
        if mask.dtype != bool or mask.shape not in ((width,), c.shape):
            raise InputError(f"keep must be a boolean mask of shape ({width},) or {c.shape}, a number of "
                             f"coefficients or a list of layers; got {mask.dtype} of shape {mask.shape}")
        return np.broadcast_to(mask, c.shape)

    def summary(self) -> str:
        """One line on how the transform was fitted (for logs)."""
        return f"{self.n_coefficients:,} coefficients"

    def _transform(self, x: np.ndarray, device) -> np.ndarray:
        raise NotImplementedError

    def _inverse(self, c: np.ndarray, device) -> np.ndarray:
        raise NotImplementedError

    def _checked(self) -> "Transform":
        if not self.fitted:
            raise NotFittedError(f"the {self.type} transform is not fitted: call fit(graph) first")
        return self


def as_batch(values, width: int, what: str) -> tuple[np.ndarray, bool]:
    """``values`` as a float64 array of shape (samples, width), and whether it was one vector."""
    x = np.asarray(values, dtype=np.float64)
    single = x.ndim == 1
    x2 = x[None, :] if single else x
    if x2.ndim != 2 or x2.shape[1] != width:
        raise InputError(f"{what} must have shape (samples, {width}) or ({width},); got {x.shape}")
    return x2, single


#: type name -> transform class: the built-in ones in the order of BUILT_IN, then the added ones
TRANSFORMS = Registry("transform type", BUILT_IN, name_of=lambda cls: cls.type, prepare=_checked_class)
