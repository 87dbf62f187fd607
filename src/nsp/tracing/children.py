"""Children mode: one layer per call of a direct child module, wired as a chain.

Layer 0 is the input; each call of a direct child of the network adds a layer (a child called twice adds
two), whose one parent is the layer recorded before it. Code between two children (``F.relu``, ``x.view``)
is not a layer, so :func:`check_chain` first makes sure that such code only passes values through
elementwise; anything else needs ops mode.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from nsp.errors import TraceError
from nsp.tracing.checks import forward_failed
from nsp.tracing.layer import Layer, kept_buffers, module_op, snapshot


def check_chain(network: nn.Module, input: torch.Tensor) -> None:
    """Raise :class:`TraceError` unless each direct child reads the output of the child called before it
    (the input for the first) through elementwise code only (``F.relu``, reshapes, adding constants).

    Children mode wires exactly that, so anything else (a skip connection around a child, a transpose or
    permute between two children, a softmax between them) would give wrong edges. Decided by autograd on
    one sample: every child's output is cut from what came before, and the tensor the next child receives
    must have a diagonal Jacobian (in flat order) with respect to the previous output and none with
    respect to earlier ones. ``J`` is diagonal exactly when ``J^T v = (J^T 1) * v`` for a random ``v``.
    """
    if not input.is_floating_point():
        return                          # integer inputs (token ids): nothing to differentiate
    children = list(network.named_children()) or [(type(network).__name__, network)]
    finite = torch.nan_to_num(input.detach(), nan=0.0, posinf=0.0, neginf=0.0)    # NaN would fail the test
    start = finite.requires_grad_(True)
    cut = [("input", start)]            # (name, leaf) per recorded layer so far
    gen = torch.Generator().manual_seed(0)

    def before(name, module):
        def hook(mod, args):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            if len(tensors) != 1 or not tensors[0].requires_grad:
                return None             # refused with its reason by the recording pass, or not a float tensor
            received, (previous, leaf) = tensors[0], cut[-1]
            if received.numel() != leaf.numel():
                return None
            v = torch.randn(received.shape, generator=gen, dtype=torch.float64).to(received.dtype)
            ones = torch.ones_like(received)
            grads = torch.autograd.grad([received], [l for _, l in cut], [ones], retain_graph=True,
                                        allow_unused=True)
            earlier = [n for (n, _), g in zip(cut[:-1], grads[:-1]) if g is not None and bool(g.ne(0).any())]
            if earlier:
                raise TraceError(
                    f"child module {name!r} ({type(module).__name__}) reads {earlier[0]!r}, not only the layer "
                    f"recorded before it ({previous!r}); children mode wires each child to the previous "
                    f"one, so this network needs trace='ops'")
            (weighted,) = torch.autograd.grad([received], [leaf], [v], retain_graph=True, allow_unused=True)
            plain = grads[-1]
            if plain is None or weighted is None:
                return None             # no dependence on the previous output at all: nothing to wire wrongly
            want = plain.reshape(-1).double() * v.reshape(-1).double()
            got = weighted.reshape(-1).double()
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()) + 1e-30):
                raise TraceError(
                    f"child module {name!r} ({type(module).__name__}) receives the output of {previous!r} "
                    f"rearranged or mixed by functional code between the two (a transpose, permute, "
                    f"softmax, ...), not elementwise; children mode would wire it neuron to neuron, so "
                    f"this network needs trace='ops'")
            return None
        return hook

    def after(name):
        def hook(mod, args, output):
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                leaf = output.detach().requires_grad_(True)
                cut.append((name, leaf))
                return leaf.clone()     # a non-leaf: in-place code downstream stays legal
            return None
        return hook

    handles = []
    for name, module in children:
        handles.append(module.register_forward_pre_hook(before(name, module)))
        handles.append(module.register_forward_hook(after(name)))
    try:
        with torch.enable_grad(), kept_buffers(network):
            network(start.clone())
    except TraceError:
        raise
    except Exception as err:
        raise forward_failed(network, input, err) from err
    finally:
        for h in handles:
            h.remove()


def record_children(network: nn.Module, input: torch.Tensor) -> list[Layer]:
    """The layers of children mode: the input, then one per call of a direct child of ``network``, each
    reading the layer before it."""
    layers = [Layer("input", f"Input{list(input.shape)}", input.detach().clone())]
    children = list(network.named_children()) or [(type(network).__name__, network)]
    calls = []

    def hook_for(name, module):
        def hook(mod, args, output):
            calls.append((name, module, [snapshot(a) for a in args], snapshot(output)))
        return hook

    handles = [m.register_forward_hook(hook_for(n, m)) for n, m in children]
    try:
        network(input)
    except Exception as err:
        raise forward_failed(network, input, err) from err
    finally:
        for h in handles:
            h.remove()

    if not calls:
        raise TraceError(
            f"children mode recorded no layer: none of the direct children of {type(network).__name__} "
            f"({', '.join(n for n, _ in children)}) was called by its forward(); containers such as "
            f"nn.ModuleList are never called themselves. Use trace='ops'")
    for name, module, args, output in calls:
        if not isinstance(output, torch.Tensor):
            raise TraceError(
                f"child module {name!r} ({type(module).__name__}) returned {type(output).__name__}, "
                f"not a tensor; children mode records tensor outputs only, use trace='ops'")
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        previous = layers[-1]
        if len(tensors) != 1 or tensors[0].numel() != previous.value.numel():
            got = ", ".join(str(tuple(t.shape)) for t in tensors) or "no tensor"
            raise TraceError(
                f"children mode connects child module {name!r} ({type(module).__name__}) to the layer "
                f"recorded before it ({previous.name!r}, shape {tuple(previous.value.shape)}), but it "
                f"received {got}; the network's dataflow is not a chain of its children, use trace='ops'")
        in_shape = tuple(tensors[0].shape)
        op = module_op(module, name, (in_shape,), tuple(output.shape))
        layers.append(Layer(name, module, output, (len(layers) - 1,), op, (len(layers) - 1,), (tensors[0],)))
    return layers
