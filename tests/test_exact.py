"""The exact standard transform: every coefficient the correctly rounded value of the exact result.

The reference is written here with Python integers: ancestor sets from the adjacency, then
``c_y = s_y - sum of c_x over the strict ancestors x of y`` (forward) and ``s_y = c_y + sum of c_x``
(inverse), with the float inputs turned into integers over one power-of-two denominator, and one
``float(Fraction)`` (correctly rounded by Python) per coefficient.
"""

import random
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp import zoo
from nsp.transforms import exact


def ancestors(adjacency) -> list[set]:
    a = sp.csr_matrix(adjacency)
    out = []
    for y in range(a.shape[0]):             # node order is topological (row = target)
        found = set()
        for x in a.indices[a.indptr[y]:a.indptr[y + 1]]:
            found.add(int(x))
            found |= out[x]
        out.append(found)
    return out


def reference(adjacency, values: np.ndarray, forward: bool) -> np.ndarray:
    """The exact transform of each row of ``values``, rounded once."""
    anc = [sorted(s) for s in ancestors(adjacency)]
    out = np.empty(values.shape)
    for row, x in enumerate(values):
        fractions = [Fraction(float(v)) for v in x]
        denominator = max(f.denominator for f in fractions)
        ints = [f.numerator * (denominator // f.denominator) for f in fractions]
        result = []
        for y, up in enumerate(anc):
            if forward:
                result.append(ints[y] - sum(result[a] for a in up))
            else:
                result.append(ints[y] + sum(ints[a] for a in up))
        out[row] = [rounded(Fraction(v, denominator)) for v in result]
    return out


def rounded(value: Fraction) -> float:
    """The nearest float (Python rounds correctly), infinite beyond the largest."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


def check(core, signals: np.ndarray, label: str) -> None:
    want = reference(core.adjacency, signals, True)
    transforms = [nsp.StandardTransform("explicit").fit(core)]
    factored = nsp.StandardTransform().fit(core)
    if factored.factored:
        transforms.append(factored)
    for t in transforms:
        assert same_bits(t.transform(signals), want), f"{label}: {t.summary()}"
        assert same_bits(t.transform(signals, device="cpu"), want), f"{label} torch: {t.summary()}"
    spectra = want + np.random.default_rng(1).standard_normal(want.shape) * np.abs(want).max()
    back = reference(core.adjacency, spectra, False)
    for t in transforms:
        assert same_bits(t.inverse_transform(spectra), back), f"{label} inverse: {t.summary()}"
    wrong = np.mean(nsp.StandardTransform(precision="float").fit(core).transform(signals) != want)
    print(f"{label}: {core.n_nodes} nodes; float path: {wrong:.1%} of coefficients not correctly rounded")


def graph_of(net, x, trace="ops"):
    return nsp.GraphCore.from_activations(nsp.Activations(net.eval(), x, trace=trace))


class DeepChain(nn.Module):
    """conv -> batch norm -> ReLU, repeated: deep enough that the float path loses small coefficients."""

    def __init__(self, depth=8, channels=2):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else channels, channels, 3, padding=1) for i in range(depth))
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(depth))

    def forward(self, x):
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)))
        return x


class Mixed(nn.Module):
    """Residual add, pooling, concatenation and a linear head."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 3, padding=1)
        self.c = nn.Conv2d(2, 2, 1)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        y = F.relu(self.a(x))
        z = F.relu(self.b(y)) + y
        w = torch.cat([F.max_pool2d(z, 2), F.avg_pool2d(self.c(z), 2)], dim=1)
        return self.fc(w.flatten(1))


class Block(nn.Module):
    """A transformer block: attention (softmax, products of two layers), MLP, residuals, layer norm."""

    def __init__(self, d=4):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Linear(d, d)

    def forward(self, x):                       # (1, tokens, d)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        attention = torch.softmax(q @ k.transpose(1, 2), dim=-1)
        x = x + self.out(attention @ v)
        return x + self.mlp(F.gelu(self.norm(x)))


def signals_of(net, x, trace="ops"):
    return nsp.record(net.eval(), x, trace).values(np.float64)


def test_deep_chain_where_the_float_path_fails(capsys):
    torch.manual_seed(0)
    net = DeepChain()
    for norm in net.norms:
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    x = torch.randn(3, 1, 5, 5)
    core = graph_of(net, x[:1])
    signals = signals_of(net, x)
    float_path = nsp.StandardTransform(precision="float").fit(core).transform(signals)
    want = reference(core.adjacency, signals, True)
    assert np.mean(float_path != want) > 0.01           # the float path does fail here
    check(core, signals, "deep conv-bn-relu chain")


class ChannelsLast(nn.Module):
    """A ConvNeXt-style block: channels last through a permute, layer norm and MLP there, back, residual."""

    def __init__(self, c=2):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm = nn.LayerNorm(c)
        self.mlp = nn.Linear(c, c)

    def forward(self, x):                       # (1, c, h, w)
        y = self.mlp(F.gelu(self.norm(self.dw(x).permute(0, 2, 3, 1))))
        return x + y.permute(0, 3, 1, 2)


@pytest.mark.parametrize("name", ["mixed", "block", "channels-last"])
def test_residuals_pooling_concatenation_and_attention(name):
    torch.manual_seed(1)
    if name == "mixed":
        net, x = Mixed(), torch.randn(2, 1, 6, 6)
    elif name == "block":
        net, x = Block(), torch.randn(2, 3, 4)
    else:
        net, x = nn.Sequential(nn.Conv2d(1, 2, 1), ChannelsLast(), ChannelsLast()), torch.randn(2, 1, 3, 4)
        assert nsp.StandardTransform().fit(graph_of(net, x[:1])).factored      # permuted axes, factored
    check(graph_of(net, x[:1]), signals_of(net, x), name)


def test_mnist_fixture_network(mnist_weights):
    net = zoo.MnistNet()
    zoo.load_state_npz(net, mnist_weights)
    x = torch.rand(2, 1, 28, 28)
    core = graph_of(net, x[:1], trace="children")
    signals = signals_of(net, x, trace="children")
    want = reference(core.adjacency, signals[:1], True)
    assert same_bits(nsp.StandardTransform().fit(core).transform(signals[:1]), want)


def layered(widths):
    rows, cols, offset = [], [], 0
    for a, b in zip(widths[:-1], widths[1:]):
        for i in range(a):
            for j in range(b):
                rows.append(offset + a + j)
                cols.append(offset + i)
        offset += a
    n = sum(widths)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))


def test_mobius_entries_beyond_int64():
    adjacency = layered([1] + [9] * 22 + [1])           # mu(first, last) = 8^21 > 2^63
    t = nsp.StandardTransform().fit(adjacency)
    signals = np.random.default_rng(0).standard_normal((2, adjacency.shape[0]))
    signals[0, 0] = 1e-30
    want = reference(adjacency, signals, True)
    assert np.abs(want).max() > 2.0 ** 63
    assert same_bits(t.transform(signals), want)
    assert same_bits(t.inverse_transform(want), reference(adjacency, want, False))


def test_any_dynamic_range_and_bad_values():
    adjacency = layered([2, 3, 3, 2])
    t = nsp.StandardTransform().fit(adjacency)
    rng = np.random.default_rng(2)
    signals = rng.standard_normal((5, 10))
    signals[0] = 0.0
    signals[1] *= 1e30
    signals[2] *= 1e-30
    signals[3, ::2] = 5e-324                            # denormals beside normal numbers
    signals[4] = [1e300, -1e300, 1e-300, 3.0, 2.0 ** -1074, -0.0, 7.0, 1e308, -1e308, 1.0]
    want = reference(adjacency, signals, True)
    assert same_bits(t.transform(signals), want)
    for bad in (np.nan, np.inf, -np.inf):
        x = signals.copy()
        x[1, 3] = bad
        with pytest.raises(ValueError, match=r"the exact transform needs finite values; entry \(1, 3\) is"):
            t.transform(x)


def test_integers_and_rounding_against_fractions():
    rng = random.Random(1)
    values = np.array([[0.0, -0.0, 1.0, -2.5, 5e-324, -1e-310, 1e308, 3.14159, 1e-30, 2.0 ** 60 + 2 ** 8]])
    mantissa, shift, exponent = exact.to_integers(values)
    for m, s, v in zip(mantissa[0], shift[0], values[0]):
        assert Fraction(int(m) << int(s)) * Fraction(2) ** int(exponent[0]) == Fraction(float(v))
    primes = exact.PRIMES[:12]
    bound = 1
    for p in primes:
        bound *= p
    ints = [0, 1, -1, 2 ** 53 + 1, -(2 ** 53 + 3), 2 ** 54 + 2, 2 ** 54 + 6]
    ints += [rng.randrange(-bound // 2 + 1, bound // 2) for _ in range(500)]
    ints += [((rng.randrange(2 ** 52, 2 ** 53) << 1) | 1) << rng.randrange(0, 100) for _ in range(300)]  # ties
    ints += [rng.randrange(-2 ** 20, 2 ** 20) << rng.randrange(0, 200) for _ in range(300)]
    ints = [v for v in ints if abs(v) < bound // 2]
    for e in (0, -40, -1074, -1100, -1160, 300, 700):
        # any representatives below p in magnitude: canonical, or shifted down by p
        rows = np.array([[[v % p - p * (i % 2) for i, v in enumerate(ints)]] for p in primes], dtype=np.float64)
        got = exact.reconstruct(rows, np.array([e]))[0]
        scale = Fraction(2) ** e
        want = np.array([rounded(Fraction(v) * scale) for v in ints])
        assert same_bits(got, want), e


def test_precision_option_storage_and_config(tmp_path):
    core = graph_of(Mixed(), torch.randn(1, 1, 6, 6))
    for precision in ("exact", "float"):
        t = nsp.StandardTransform(precision=precision).fit(core)
        assert t.get_params() == {"method": "auto", "precision": precision}
        nsp.OutputLoader.save(t, tmp_path / f"{precision}.h5")
        assert nsp.OutputLoader.load(tmp_path / f"{precision}.h5").precision == precision
    with pytest.raises(ValueError, match="unknown precision 'double' for the standard transform; accepted: exact, float"):
        nsp.StandardTransform(precision="double")


def test_matrices_on_demand_for_both_paths():
    core = graph_of(Mixed(), torch.randn(1, 1, 6, 6))
    reference_t = nsp.StandardTransform("explicit", "float").fit(core)
    for method in ("auto", "explicit"):
        t = nsp.StandardTransform(method).fit(core)
        assert (t.zeta != reference_t.zeta).nnz == 0
        assert (t.mobius != reference_t.mobius).nnz == 0 and t.max_abs_mobius == reference_t.max_abs_mobius


def test_balanced_reduction_is_exact_up_to_its_limit():
    rng = random.Random(3)
    for p in (exact.PRIMES[0], exact.PRIMES[40], exact.PRIMES[-1], 3):
        edge = (1 << 53) - p
        values = [0, 1, -1, p, -p, edge, -edge, edge - 1, p // 2, -(p // 2), p // 2 + 1]
        values += [rng.randrange(-edge, edge + 1) for _ in range(2000)]
        values += [rng.randrange(-2 ** 30, 2 ** 30) * p + rng.choice([p // 2, -(p // 2), p // 2 + 1]) for _ in range(200)]
        values = [v for v in values if abs(v) <= edge]
        x = np.array(values, dtype=np.float64)
        assert [int(v) for v in x] == values                 # the inputs themselves are exact
        for array in (x.copy(), x.copy().reshape(-1, 1)):                 # NumPy: balanced
            got = [int(v) for v in exact.reduce_(array, float(p), 1.0 / p).ravel()]
            assert all((g - v) % p == 0 and abs(g) <= p // 2 + 4 for g, v in zip(got, values)), p
        got = [int(v) for v in exact.reduce_(torch.from_numpy(x.copy()), float(p), 1.0 / p)]   # torch: [0, p)
        assert got == [v % p for v in values], p


@pytest.mark.parametrize("forward", [True, False])
def test_modular_run_same_residues_on_every_backend_and_in_place(forward):
    from nsp.transforms.factored import run
    torch.manual_seed(4)
    net, x = Mixed(), torch.randn(3, 1, 6, 6)
    closure = nsp.StandardTransform().fit(graph_of(net, x[:1])).closure
    signals = signals_of(net, x)
    mantissa, shift, _ = exact.to_integers(signals)
    primes = exact.PRIMES[:5]
    stacked = exact.residues(mantissa, shift, primes).reshape(-1, signals.shape[1])
    moduli = np.repeat(np.asarray(primes, dtype=np.float64), signals.shape[0])
    want = run(closure, stacked, forward, None, moduli)
    for device, overwrite in ((None, True), ("cpu", False), ("cpu", True)):
        got = run(closure, stacked.copy(), forward, device, moduli, overwrite=overwrite)
        p = moduli[:, None]
        assert np.array_equal(np.mod(got, p), np.mod(want, p)), (device, overwrite)   # torch: [0, p)
    residue = want.reshape(len(primes), signals.shape[0], -1)
    for i, p in enumerate(primes):                    # residues of magnitude below p, of the exact result
        assert np.abs(residue[i]).max() <= p // 2 + 4
    plain = run(closure, signals, forward)
    assert same_bits(run(closure, signals.copy(), forward, overwrite=True), plain)


def _layered(generations, width=2):
    """Adjacency (row = target) of ``generations`` layers of ``width`` nodes, each fully connected to the next."""
    edges = [((g - 1) * width + a, g * width + b) for g in range(1, generations) for a in range(width)
             for b in range(width)]
    cols, rows = zip(*edges)                    # row = target, column = source
    n = generations * width
    return sp.csr_matrix((np.ones(len(edges)), (rows, cols)), shape=(n, n))


def test_deep_graphs_are_exact_while_the_bound_fits_and_refused_before_any_arithmetic_beyond():
    # 200 layers: a proven growth bound of ~1,400 bits, within the 96 primes; every coefficient equals
    # c_y = s_y - (sum of the coefficients of y's ancestors: every node of every earlier layer), in integers
    rng = np.random.default_rng(3)
    s = rng.integers(-9, 10, size=(1, 400))
    want, earlier = [], 0
    for g in range(200):
        layer = [int(v) - earlier for v in s[0, 2 * g:2 * g + 2]]
        want += layer
        earlier += sum(layer)
    got = nsp.StandardTransform().fit(_layered(200)).transform(s.astype(np.float64))
    assert got[0].tolist() == [float(v) for v in want]
    # 400 layers: the bound (3,277 bits) exceeds what the primes hold (2,494): refused with the figures
    deep = nsp.StandardTransform().fit(_layered(400))
    message = (r"exact arithmetic would need coefficients of up to 3278 bits \(1 bits of the signal, 3277 bits of "
               r"growth along the paths into layer 399 of 400\); its 96 primes hold 2494 bits; use precision='float'")
    with pytest.raises(exact.ExactnessError, match=message):
        deep.transform(np.ones((1, deep.n)))
    with pytest.raises(exact.ExactnessError, match=message):
        deep.exact_primes(np.ones((1, deep.n)))
    assert np.array_equal(nsp.StandardTransform(precision="float").fit(_layered(400)).transform(np.zeros((1, 800))),
                          np.zeros((1, 800)))
