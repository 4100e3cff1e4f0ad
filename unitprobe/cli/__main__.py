"""``python -m unitprobe.cli``: the same as the ``unitprobe`` command."""

from unitprobe.cli import main

main(prog_name="unitprobe")
