"""Shared test setup."""

import matplotlib
import torch

matplotlib.use("Agg")
# The models under test are tiny: one thread is fastest and keeps timings stable on shared CI cores.
torch.set_num_threads(1)
