"""The analysis methods: probe targets, probes, ablations, attributions, roles.

Each method module imports the model and task layers and the foundation modules, never a
sibling method module. See ``docs/architecture.md``.
"""
