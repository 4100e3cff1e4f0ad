"""The network layer: the multi-unit LSTM, its training, checkpoints and hand-wired networks.

Imports only :mod:`unitprobe.tasks` and the foundation modules. See ``docs/architecture.md``.
"""
