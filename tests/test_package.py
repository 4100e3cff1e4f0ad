import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import unitprobe

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


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


def test_every_imported_distribution_is_declared():
    root = Path(unitprobe.__file__).parent
    imported = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"unitprobe"}
    project = tomllib.loads((root.parent / "pyproject.toml").read_text())["project"]
    extras = [d for group in project["optional-dependencies"].values() for d in group]
    declared = {re.split(r"[<>=;\[ ]", d)[0].lower() for d in project["dependencies"] + extras}
    distribution = {"sklearn": "scikit-learn", "distributed": "dask"}
    assert {distribution.get(name, name) for name in third_party} <= declared


def test_a_short_module_path_never_shadows_the_function_of_its_name():
    code = (
        "import types, unitprobe.train, unitprobe.analyze\n"
        "from unitprobe import analyze, train\n"
        "from unitprobe.train import TrainConfig\n"
        "import unitprobe.model.train as real\n"
        "assert not isinstance(train, types.ModuleType) and train is real.train\n"
        "assert analyze.__module__ == 'unitprobe.pipeline.analyze' and callable(analyze)\n"
        "assert TrainConfig is real.TrainConfig\n"
        "import unitprobe, unitprobe.probes\n"
        "assert unitprobe.probes is unitprobe.methods.probes  # other aliases bind as before\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


def test_the_probe_functions_import_without_torch():
    code = (
        "import sys\n"
        "from unitprobe.probes import identifiability, partial_r2, population_probe, unit_probes\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
