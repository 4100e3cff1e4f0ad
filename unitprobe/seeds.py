"""Separate random streams derived from the user's one seed.

An analysis draws random numbers for six independent purposes. Seeding all of them with the
same integer couples them: with ``--seed 0`` the first untrained control network was exactly
the trained network's initialization (training also seeds torch with 0), and the analysis data
were the training data. Each purpose therefore gets its own stream, derived from the user's
seed with NumPy's ``SeedSequence`` (a stream's seed depends on the user's seed and the stream's
name only):

=============  ==============================================================
stream         seeds
=============  ==============================================================
data           the sequences generated for the analysis
controls       the untrained control networks (and null networks)
permutations   the permutation tests of the probes
ablation       resample ablation (which sequence donates each state)
attribution    which (sequence, step) pairs the attributions sample
interventions  the counterfactual pairs and learned directions
=============  ==============================================================

Example
-------
>>> stream_seed(0, "controls") != stream_seed(0, "data")
True
"""

from __future__ import annotations

import zlib

import numpy as np

from unitprobe.validation import check_choice, check_int

__all__ = ["STREAMS", "stream_seed", "stream_seeds"]

STREAMS = ("data", "controls", "permutations", "ablation", "attribution", "interventions")


def stream_seed(seed: int, stream: str) -> int:
    """The seed of one named stream, an integer in ``[0, 2**31)``.

    Parameters
    ----------
    seed : int
        The user's seed, ``>= 0``.
    stream : str
        One of :data:`STREAMS`.
    """
    check_int(seed, "seed", minimum=0)
    check_choice(stream, "stream", STREAMS)
    entropy = [int(seed) & 0xFFFFFFFF, int(seed) >> 32, zlib.crc32(stream.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def stream_seeds(seed: int) -> dict[str, int]:
    """Every stream's seed: ``{stream: stream_seed(seed, stream)}``."""
    return {s: stream_seed(seed, s) for s in STREAMS}
