"""Shared test setup."""

import types

import matplotlib
import numpy as np
import pytest
import torch

from unitprobe.model.planted import planted_lstm

matplotlib.use("Agg")
# The models under test are tiny: one thread is fastest and keeps timings stable on shared CI cores.
torch.set_num_threads(1)


@pytest.fixture
def planted_kx():
    """Make a hand-wired network and data: units hold K[t], K[t-1], X[t], X[t-1].

    ``planted_kx(n_seq=200, n_steps=12, seed=0) -> (model, dataset)``; output a = 10 h(X[t-1]),
    output b = 10 h(K[t]); the dataset's targets are exactly X[t-1] and K[t].
    """

    def make(n_seq: int = 200, n_steps: int = 12, seed: int = 0):
        readout = np.zeros((2, 4))
        readout[0, 3] = 10.0
        readout[1, 0] = 10.0
        model = planted_lstm(2, [(0, 0), (0, 1), (1, 0), (1, 1)], n_outputs=2, readout=readout)
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n_seq, n_steps, 2)).astype(np.float32)
        y = np.zeros((n_seq, n_steps, 2), np.float32)
        y[:, 1:, 0] = x[:, :-1, 1]  # X[t-1]
        y[:, :, 1] = x[:, :, 0]  # K[t]
        return model, types.SimpleNamespace(inputs=x, targets=y, output_names=["a", "b"])

    return make


@pytest.fixture
def rotated_kx():
    """A hand-wired network whose X[t-1] and K[t-1] are spread over units 2 and 3 as a 45
    degree rotation (single units see mixtures, a learned direction recovers each term);
    output a = 10 X[t-1], output b = 10 K[t-1]."""
    r = 1 / np.sqrt(2)
    taps = [(0, 0), (1, 0), {(1, 1): r, (0, 1): r}, {(1, 1): r, (0, 1): -r}]
    readout = np.zeros((2, 4))
    readout[0, 2:] = (10 * r, 10 * r)  # X[t-1]
    readout[1, 2:] = (10 * r, -10 * r)  # K[t-1]
    return planted_lstm(2, taps, n_outputs=2, readout=readout)
