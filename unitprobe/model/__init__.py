"""The network layer: the multi-unit LSTM, its training, checkpoints, hand-wired networks and
networks trained inside a connectivity mask (:mod:`unitprobe.model.masked`).

Imports only :mod:`unitprobe.tasks` and the foundation modules. See ``docs/architecture.md``.
"""
