"""Inputs the library warns about or refuses: networks in training mode, NaN/inf inputs, CUDA devices."""

import copy
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn

import nsp
from nsp.devices import torch_device
from nsp.pipeline.stages.common import job_device
from nsp.tracing.recording import training_modules
from nsp.transforms import LaplacianTransform, SemTransform, StandardTransform


def training_warning(network: str, modules: str, count: int) -> str:
    return (f"{network} is in training mode; modules that run differently in training than in evaluation: "
            f"{modules} ({count} in all). It is recorded as it is, in training mode (dropout active, batch norm "
            f"with the batch's own statistics); its buffers (running statistics) are left unchanged. Call "
            f"network.eval() first to record it as used for inference")


class BatchNormNet(nn.Module):
    """conv -> BatchNorm2d -> ReLU -> flatten -> linear -> BatchNorm1d, for (B, 1, 4, 4) inputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn2d = nn.BatchNorm2d(3)
        self.fc = nn.Linear(48, 5)
        self.bn1d = nn.BatchNorm1d(5)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():                   # running statistics that are not the defaults
            for bn in (self.bn2d, self.bn1d):
                bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen))
                bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
                bn.num_batches_tracked.fill_(7)

    def forward(self, x):
        return self.bn1d(self.fc(torch.relu(self.bn2d(self.conv(x))).flatten(1)))


def buffers(net: nn.Module) -> dict:
    return {name: b.detach().clone() for name, b in net.named_buffers()}


def assert_same_buffers(before: dict, net: nn.Module) -> None:
    after = dict(net.named_buffers())
    assert list(after) == list(before)
    for name, value in before.items():
        assert after[name].dtype == value.dtype and torch.equal(after[name], value), name


# --- networks in training mode ---------------------------------------------------------------------------

@pytest.mark.parametrize("trace", ["children", "ops"])
def test_training_batch_norm_warns_records_batch_statistics_and_keeps_buffers(trace):
    torch.manual_seed(1)
    net = BatchNormNet()
    x = torch.randn(4, 1, 4, 4)
    plain = copy.deepcopy(net)
    expected = plain(x).detach()
    assert not torch.equal(plain.bn2d.running_mean, net.bn2d.running_mean)     # a plain forward updates them
    before = buffers(net)
    with pytest.warns(UserWarning, match=re.escape(training_warning(
            "BatchNormNet", "'bn2d' (BatchNorm2d), 'bn1d' (BatchNorm1d)", 2))) as caught:
        recording = nsp.record(net, x, trace)
    assert len(caught) == 1 and caught[0].filename == __file__         # points at the caller
    assert_same_buffers(before, net)
    assert net.training                                                 # the mode is left as it was
    out = torch.from_numpy(recording.values()[:, recording.table.offsets[recording.output]:])
    assert torch.equal(out, expected)                                   # recorded in training mode


@pytest.mark.parametrize("trace", ["children", "ops"])
def test_graph_of_a_training_network_keeps_buffers(trace):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():
        net[1].running_mean.fill_(0.25)
    before = buffers(net)
    with pytest.warns(UserWarning, match=re.escape(training_warning("Sequential", "'1' (BatchNorm2d)", 1))):
        acts = nsp.Activations(net, torch.randn(1, 1, 4, 4), trace=trace)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # building the graph warns no more
        graph = nsp.NNGraph(acts)
        nsp.GraphCore.from_activations(acts, incl=False)
    assert graph.core.kinds[2] == "reduce"                              # batch statistics: the whole channel
    assert_same_buffers(before, net)


class Tracker(nn.Module):
    """A module without a rule that counts its calls in a buffer (as BatchNorm's num_batches_tracked)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        self.calls += 1
        return torch.tanh(x) * 2


@pytest.mark.parametrize("jacobian", [False, True], ids=["traced", "jacobian-fallback"])
def test_graph_building_re_evaluates_modules_without_changing_their_buffers(monkeypatch, jacobian):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 4), Tracker(), nn.Linear(4, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # no mode-dependent module: no warning
        acts = nsp.Activations(net, torch.randn(1, 3))
    assert int(net[1].calls) == 0
    if jacobian:        # the child is not traced but evaluated, as where its internals cannot be traced
        monkeypatch.setattr(nsp.graph.collapse, "traced_blocks", lambda *args: None)
    for incl in (True, False):
        core = nsp.GraphCore.from_activations(acts, incl=incl)
        assert core.kinds == ["input", "linear", "jacobian", "linear"]
    nsp.NNGraph(acts)
    assert int(net[1].calls) == 0


def test_graph_building_does_not_warn_again_for_a_part_it_records():
    net = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)), nn.Linear(4, 2))
    with pytest.warns(UserWarning, match=re.escape(training_warning("Sequential", "'1.1' (Dropout)", 1))):
        acts = nsp.Activations(net, torch.randn(1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = nsp.NNGraph(acts)                   # the container child is recorded again, in ops mode
    assert graph.core.kinds == ["input", "linear", "jacobian", "linear"]


def test_training_dropout_is_applied_as_recorded():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(6, 40), nn.Dropout(0.5))
    x = torch.randn(1, 6)
    with pytest.warns(UserWarning, match=re.escape(training_warning("Sequential", "'1' (Dropout)", 1))):
        acts = nsp.Activations(net, x)
    linear, dropped = acts.layeractivations[1], acts.layeractivations[2]
    kept = dropped != 0
    assert 0 < int(kept.sum()) < 40                                     # some dropped, some kept
    assert torch.allclose(dropped[kept], 2 * linear[kept])              # kept ones scaled by 1 / (1 - p)
    net.eval()
    evaluated = nsp.Activations(net, x)
    assert torch.equal(evaluated.layeractivations[2], evaluated.layeractivations[1])


def test_warning_names_the_first_three_modules_and_the_count():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1), nn.Dropout(0.2), nn.Linear(2, 2), nn.AlphaDropout(0.1),
                        nn.Dropout(0.3), nn.Dropout(0.4))
    with pytest.warns(UserWarning, match=re.escape(training_warning(
            "Sequential", "'1' (Dropout), '2' (Dropout), '4' (AlphaDropout) and 2 more", 5))):
        nsp.record(net, torch.randn(2, 2), "ops")
    with pytest.warns(UserWarning, match=re.escape(training_warning(
            "Dropout", "the network itself (Dropout)", 1))):
        nsp.record(nn.Dropout(0.5), torch.randn(2, 3), "ops")


def test_only_modules_that_depend_on_the_mode_count():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.0), nn.BatchNorm1d(4, track_running_stats=False),
                        nn.InstanceNorm1d(4), nn.InstanceNorm1d(4, track_running_stats=True),
                        nn.MultiheadAttention(4, 1), nn.MultiheadAttention(4, 1, dropout=0.1),
                        nn.LSTM(4, 4, num_layers=2, dropout=0.2))
    assert [name for name, _ in training_modules(net)] == ["4", "6", "7"]
    assert training_modules(net.eval()) == []


def test_evaluation_mode_and_mode_independent_networks_give_no_warning():
    torch.manual_seed(5)
    net = BatchNormNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for trace in ("children", "ops"):
            acts = nsp.Activations(net, torch.randn(1, 1, 4, 4), trace=trace)
            nsp.NNGraph(acts)
            nsp.record(net, torch.randn(3, 1, 4, 4), trace)
        plain = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))       # in training mode, as built
        assert plain.training
        nsp.Activations(plain, torch.randn(1, 3))


def test_a_forward_pass_that_fails_in_training_mode_suggests_eval():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    with pytest.warns(UserWarning, match="is in training mode"):
        with pytest.raises(ValueError, match=re.escape(
                "Sequential failed on an input of shape (1, 3) (ValueError: Expected more than 1 value per channel "
                "when training, got input size torch.Size([1, 4])); pass samples in the shape the network "
                "expects, after a leading batch axis; it is in training mode: call network.eval() first if it "
                "should run as for inference")):
            nsp.Activations(net, torch.randn(1, 3))
    nsp.Activations(net.eval(), torch.randn(1, 3))


# --- NaN and infinite inputs ---------------------------------------------------------------------------------

class Squashed(nn.Module):
    """Two linear children with a functional tanh between them (children mode checks that code)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 5)
        self.b = nn.Linear(5, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


@pytest.mark.parametrize("trace", ["children", "ops"])
def test_non_finite_inputs_are_recorded_with_a_warning(trace):
    torch.manual_seed(6)
    net = Squashed().eval()
    x = torch.randn(3, 4)
    x[0, 1] = float("nan")
    x[1, 2] = float("nan")
    x[2, 0] = float("-inf")
    with pytest.warns(UserWarning, match=re.escape(
            "the input holds 2 NaN and 1 infinite values (of 12); they are recorded as they are, and "
            "activations computed from them may be NaN or infinite too")) as caught:
        recording = nsp.record(net, x, trace)
    assert len(caught) == 1 and caught[0].filename == __file__
    with torch.no_grad():
        expected = net(x)
    values = recording.values()
    np.testing.assert_array_equal(values[:, :4], x.numpy())              # NaN where NaN, -inf where -inf
    np.testing.assert_array_equal(values[:, -3:], expected.numpy())
    assert np.isnan(values[0, -3:]).all() and np.isfinite(values[:, 4:]).sum() < values[:, 4:].size


def test_one_non_finite_sample_through_activations():
    torch.manual_seed(7)
    net = Squashed().eval()
    x = torch.randn(1, 4)
    x[0, 3] = float("inf")
    with pytest.warns(UserWarning, match=re.escape("the input holds 0 NaN and 1 infinite values (of 4)")):
        acts = nsp.Activations(net, x)
    with torch.no_grad():
        expected = net(x)[0]
    assert torch.equal(acts.layeractivations[-1], expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nsp.Activations(net, torch.zeros(1, 4))                         # finite: no warning
        nsp.record(nn.Embedding(5, 2), torch.tensor([[1, 4]]), "children")    # integer inputs: not checked


# --- devices ---------------------------------------------------------------------------------------------------

NO_CUDA = "device {!r} requested but no CUDA device is available on this machine (torch.cuda.is_available() " \
          "is False); use 'cpu' instead"
UNKNOWN = "device {!r} is not a device nsp computes on; accepted: None (NumPy on the CPU), 'cpu', 'cuda', " \
          "'cuda:N' (N a GPU index) or a torch.device of those"


def fitted_transforms():
    adjacency = sp.csr_matrix(np.tril(np.random.default_rng(0).random((12, 12)) < 0.3, -1).astype(np.int8))
    return [StandardTransform().fit(adjacency), LaplacianTransform().fit(adjacency),
            SemTransform().fit(adjacency.astype(float) * 0.5)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages where CUDA is absent")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda"), torch.device("cuda:0")])
def test_cuda_without_cuda_is_a_clear_error_in_every_transform(device):
    x = np.random.default_rng(1).random((2, 12))
    for transform in fitted_transforms():
        with pytest.raises(ValueError, match=re.escape(NO_CUDA.format(str(device)))):
            transform.transform(x, device=device)
        with pytest.raises(ValueError, match=re.escape(NO_CUDA.format(str(device)))):
            transform.inverse_transform(x, device=device)


@pytest.mark.parametrize("device", ["gpu0", "cuda:x", "CPU", "meta", ""])
def test_unknown_devices_are_named(device):
    transform = fitted_transforms()[0]
    with pytest.raises(ValueError, match=re.escape(UNKNOWN.format(device))):
        transform.transform(np.zeros(12), device=device)
    with pytest.raises(ValueError, match=re.escape(UNKNOWN.format(device))):
        transform.inverse_transform(np.zeros(12), device=device)


def test_devices_that_are_not_strings_are_type_errors():
    with pytest.raises(TypeError, match=re.escape(
            "device must be None (NumPy on the CPU), 'cpu', 'cuda', 'cuda:N' (N a GPU index) or a torch.device of "
            "those; got int 0")):
        fitted_transforms()[1].transform(np.zeros(12), device=0)


def test_cpu_device_runs_torch_and_matches_numpy():
    x = np.random.default_rng(2).random((3, 12))
    for transform in fitted_transforms():
        for device in ("cpu", torch.device("cpu")):
            assert np.allclose(transform.transform(x, device=device), transform.transform(x), rtol=1e-13, atol=1e-13)
            c = transform.transform(x)
            assert np.allclose(transform.inverse_transform(c, device=device), x, rtol=1e-12, atol=1e-12)
    assert torch_device(None) is None and torch_device("cpu") == torch.device("cpu")


def test_gpu_index_beyond_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert torch_device("cuda:0") == torch.device("cuda", 0)
    assert torch_device("cuda") == torch.device("cuda")
    with pytest.raises(ValueError, match=re.escape("device 'cuda:1' requested but this machine has 1 CUDA device "
                                                   "(cuda:0)")):
        torch_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    args = SimpleNamespace(threads=torch.get_num_threads())
    with pytest.raises(ValueError, match=re.escape("config key device: 'cuda:5' requested but this machine has 2 "
                                                   "CUDA devices (cuda:0 to cuda:1)")):
        job_device(args, {"device": "cuda:5"})
    assert job_device(args, {"device": "cuda:1"}) == torch.device("cuda", 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
def test_cli_device_uses_the_same_check():
    args = SimpleNamespace(threads=torch.get_num_threads())
    assert job_device(args, {"device": "cpu"}) is None
    with pytest.raises(ValueError, match=re.escape(
            "config key device: 'cuda:0' requested but no CUDA device is available on this machine "
            "(torch.cuda.is_available() is False); use 'cpu' instead")):
        job_device(args, {"device": "cuda:0"})


class Replaces(nn.Module):
    """Replaces its buffer tensor on every forward pass (as some custom statistics modules do)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        self.count = self.count + 1
        return self.fc(x)


def test_a_buffer_the_forward_pass_replaces_is_put_back():
    net = Replaces().eval()
    before = net.count
    nsp.Activations(net, torch.ones(1, 3))
    assert net.count is before and float(net.count) == 0.0 and dict(net.named_buffers()) == {"count": before}
