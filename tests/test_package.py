import importlib
import subprocess
import sys

import unitprobe


def test_every_public_name_resolves_to_its_module():
    for name in unitprobe.__all__:
        value = getattr(unitprobe, name)
        assert value is not None, name
    assert (
        unitprobe.probe_model is importlib.import_module("unitprobe.pipeline.probing").probe_model
    )
    assert unitprobe.unit_probes is importlib.import_module("unitprobe.methods.probes").unit_probes
    assert unitprobe.TaskSpec is importlib.import_module("unitprobe.tasks").TaskSpec


def test_import_is_light():
    code = "import sys, unitprobe; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_short_import_paths_are_the_layered_modules():
    from unitprobe.probes import unit_probes

    assert unit_probes is importlib.import_module("unitprobe.methods.probes").unit_probes
    for short, real in unitprobe._compat.ALIASES.items():
        module = importlib.import_module(short)
        assert module is importlib.import_module(real), short
        assert module.__spec__.name == real  # the alias does not replace the real module's spec
