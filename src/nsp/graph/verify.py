"""Checking a graph against autograd: dependences of the network's output on its input with no path.

For a structural graph every nonzero entry of the Jacobian of the output with respect to the input, at
any input, must have a path from that input neuron to that output neuron. :func:`missing_dependences`
counts the entries that do not, at a few random inputs (float64): a brute-force check of the rules,
independent of them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def reachability(core, outputs: int) -> np.ndarray:
    """(outputs, input neurons): which input neurons have a path to each neuron of the last layer."""
    a = sp.csr_matrix(core.adjacency, dtype=np.float32)
    o = core.offsets
    mark = np.zeros((core.n_nodes, outputs), dtype=np.float32)
    mark[o[-2]:o[-1]] = np.eye(outputs, dtype=np.float32)
    for layer in range(core.n_layers - 1, 0, -1):
        mark += (a[o[layer]:o[layer + 1]].T @ mark[o[layer]:o[layer + 1]]) > 0
        np.minimum(mark, 1, out=mark)
    return mark[o[0]:o[1]].T > 0


def missing_dependences(network: torch.nn.Module, core, input: torch.Tensor, inputs: int = 2, seed: int = 0) -> int:
    """Jacobian entries (output x input, at ``inputs`` seeded random inputs of ``input``'s shape, float64)
    that are nonzero where the graph has no path from that input neuron to that output neuron. The graph's
    last layer must be the network's output. ``network`` is converted to float64 in place."""
    network = network.double()
    outputs = int(core.sizes[-1])
    reach = reachability(core, outputs)
    gen = torch.Generator().manual_seed(seed)
    count = 0
    for _ in range(inputs):
        probe = torch.randn(input.shape, generator=gen, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda v: network(v).reshape(-1), probe).reshape(outputs, -1)
        count += int(((jac != 0).numpy() & ~reach).sum())
    return count
