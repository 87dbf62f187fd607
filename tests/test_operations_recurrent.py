"""Recurrent layers (nn.RNN, nn.LSTM, nn.GRU): the rule's blocks equal the Jacobian's nonzero pattern."""

import time

import numpy as np
import pytest
import torch
import torch.nn as nn

import nsp
from nsp.graph.core import GraphCore

from test_connectivity import jac_patterns, stored_block


class Sequence(nn.Module):
    """The output sequence of a recurrent layer; a time-major layer gets its input transposed (nsp records
    networks whose input has a leading batch axis)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):                                         # (batch, time, features)
        return self.rnn(x if self.rnn.batch_first else x.transpose(0, 1))[0]


CASES = [
    (nn.LSTM(3, 4, batch_first=True), (2, 5, 3)),
    (nn.LSTM(3, 4), (2, 5, 3)),                                   # time first
    (nn.GRU(3, 4, batch_first=True, bidirectional=True), (2, 5, 3)),
    (nn.RNN(3, 4, num_layers=2, bidirectional=True), (2, 5, 3)),
    (nn.LSTM(3, 4, num_layers=2, batch_first=True, proj_size=2), (2, 4, 3)),
    (nn.LSTM(3, 2, batch_first=True, bidirectional=True, proj_size=1), (1, 6, 3)),
]


@pytest.mark.parametrize("rnn, shape", CASES, ids=[repr(r) for r, _ in CASES])
def test_recurrent_blocks_equal_the_jacobian_pattern(rnn, shape):
    torch.manual_seed(0)
    net = Sequence(rnn.double()).eval()
    x = torch.randn(*shape, dtype=torch.float64)[:1]
    core = GraphCore.from_recording(nsp.record(net, x, "ops"))
    assert core.kinds[-1] == "recurrent" and core.probed == ()
    (parent, blk), = core.blocks[-1]
    given = x if rnn.batch_first else x.transpose(0, 1)
    expected, = jac_patterns(lambda t: rnn(t)[0], given)
    assert np.array_equal(stored_block(blk), expected)


def test_recurrent_sem_coefficients_are_the_output_minus_the_sum_of_its_inputs():
    torch.manual_seed(1)
    net = Sequence(nn.GRU(3, 2, batch_first=True, bidirectional=True).double()).eval()
    acts = nsp.Activations(net, torch.randn(1, 4, 3, dtype=torch.float64), trace="ops")
    core = GraphCore.from_activations(acts)
    s = acts.to_array(np.float64).reshape(1, -1)
    c = nsp.make_transform("sem").fit(core).transform(s)
    inputs, outputs = s[0, :12].reshape(4, 3), s[0, 12:].reshape(4, 2, 2)
    for t in range(4):                                        # forward half reads steps <= t, backward >= t
        assert np.allclose(c[0, 12:].reshape(4, 2, 2)[t, 0], outputs[t, 0] - inputs[:t + 1].sum(), atol=1e-14)
        assert np.allclose(c[0, 12:].reshape(4, 2, 2)[t, 1], outputs[t, 1] - inputs[t:].sum(), atol=1e-14)


def test_a_recurrent_layer_with_an_initial_state_goes_to_the_fallback():
    class WithState(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.h = nn.GRU(3, 2, batch_first=True), nn.Linear(3, 2)

        def forward(self, x):                                 # h_0 computed from the input: not described
            return self.rnn(x, self.h(x[:, :1]).transpose(0, 1).contiguous())[0]

    core = GraphCore.from_recording(nsp.record(WithState().eval(), torch.randn(1, 4, 3), "ops"))
    assert "recurrent" not in core.kinds and "jacobian" in core.kinds
