"""One default per parameter: a public method's default is its config field's."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import unitprobe
from unitprobe import config
from unitprobe.methods.interventions.interchange import N_PAIRS

#: Which config holds the defaults of each method package.
DOMAINS = {
    "unitprobe.methods.attribution": config.AttributionConfig,
    "unitprobe.methods.probes": config.ProbeConfig,
    "unitprobe.methods.ablation": config.AblationConfig,
    "unitprobe.methods.interventions": config.RoleConfig,
    "unitprobe.methods.roles": config.RoleConfig,
}
#: Parameters whose config field has another name: (module, parameter) -> field.
RENAMED = {
    ("unitprobe.methods.attribution.fields", "n_steps_ig"): "field_n_steps_ig",
    ("unitprobe.methods.attribution.fields", "batch_size"): "field_batch_size",
}
#: Defaults that differ on purpose, and why.
DIFFERENT = {
    # one sequence's attribution must not depend on the other sequences passed with it
    ("input_lag_per_sequence", "baseline"),
    ("unit_attribution_per_sequence", "baseline"),
    # None: no direction table was given (the pipeline passes its own)
    ("term_table", "directions"),
}


def _public_callables():
    for info in pkgutil.walk_packages(unitprobe.__path__, "unitprobe."):
        domain = [c for prefix, c in DOMAINS.items() if info.name.startswith(prefix)]
        if not domain:
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name, None)
            if callable(obj) and getattr(obj, "__module__", None) == module.__name__:
                yield module.__name__, name, obj, domain[0]


def test_every_public_method_default_is_its_config_default():
    checked, wrong = 0, []
    for module, name, obj, domain in _public_callables():
        fields = {f.name: f.default for f in dataclasses.fields(domain)}
        try:
            parameters = inspect.signature(obj).parameters.values()
        except (TypeError, ValueError):
            continue
        for p in parameters:
            field = RENAMED.get((module, p.name), p.name)
            if p.default is inspect.Parameter.empty or field not in fields:
                continue
            if (name, p.name) in DIFFERENT:
                assert p.default != fields[field], f"{name}({p.name}) is no longer different"
                continue
            checked += 1
            if p.default != fields[field]:
                wrong.append(f"{module}.{name}({p.name}={p.default!r}): {field}={fields[field]!r}")
    assert not wrong, wrong
    assert checked >= 40  # the check reaches the methods' signatures


def test_module_constants_are_the_config_defaults():
    assert N_PAIRS == config.RoleConfig.n_pairs
