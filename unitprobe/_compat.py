"""Short import paths (``unitprobe.probes``, ``unitprobe.models``, ...) for the layered modules.

``from unitprobe.probes import unit_probes`` is the documented way to import the probe
functions, and code written against the flat layout of 0.1 keeps working. Each short name is an
alias: importing it imports the real module (for example :mod:`unitprobe.methods.probes`) and
binds the same module object, so ``unitprobe.probes is unitprobe.methods.probes``. Nothing is
imported until a short path is used, so ``import unitprobe`` stays fast. Two short paths share
the name of a public function, ``unitprobe.train`` and ``unitprobe.analyze``: import from them
(``from unitprobe.train import TrainConfig``); as attributes of the package they are always the
functions, whatever was imported before.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

__all__ = ["ALIASES", "install"]

#: Short path -> real module.
ALIASES = {
    "unitprobe.models": "unitprobe.model.lstm",
    "unitprobe.train": "unitprobe.model.train",
    "unitprobe.checkpoint": "unitprobe.model.checkpoint",
    "unitprobe.planted": "unitprobe.model.planted",
    "unitprobe.targets": "unitprobe.methods.targets",
    "unitprobe.probes": "unitprobe.methods.probes",
    "unitprobe.ablation": "unitprobe.methods.ablation",
    "unitprobe.attribution": "unitprobe.methods.attribution",
    "unitprobe.roles": "unitprobe.methods.roles",
    "unitprobe.analyze": "unitprobe.pipeline.analyze",
    "unitprobe.sweep": "unitprobe.pipeline.sweep",
    "unitprobe.sweepstats": "unitprobe.pipeline.sweepstats",
    "unitprobe.figures": "unitprobe.views.figures",
    "unitprobe.report": "unitprobe.views.report",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The real module has run already; the import system set the alias's spec on it, so put
        # the real one back (reload, pickling by reference and multiprocessing read it).
        module.__spec__ = self.real_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - importlib protocol
        if fullname not in ALIASES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(ALIASES[fullname]))


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
