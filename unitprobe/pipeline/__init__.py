"""Whole jobs built from the methods: ``analyze``, the demo, capacity sweeps and their statistics.

See ``docs/architecture.md`` for the data flow of one ``analyze`` call.
"""
