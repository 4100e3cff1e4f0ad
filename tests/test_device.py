"""Tests of unitprobe.devices and ``--device``: resolving names, training and the analysis on
a device (the CPU here; the CUDA tests run only where there is a GPU), the command line and
the sweep. ``tests/test_device_clean.py`` checks statically that the analysis code is
device-clean."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from unitprobe import sweep as SW
from unitprobe.cli import main
from unitprobe.config import AnalyzeConfig, ProbeConfig
from unitprobe.devices import DEVICES, check_device, full_float32, on_device, resolve_device
from unitprobe.errors import UnitprobeError
from unitprobe.methods.ablation import ablation_table
from unitprobe.methods.attribution import attribution_tables
from unitprobe.methods.interventions import interchange_table
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.model.lstm import run, suffix_outputs
from unitprobe.model.planted import planted_lstm
from unitprobe.model.train import TrainConfig, train, train_task
from unitprobe.pipeline.analyze import analyze, compute_analysis
from unitprobe.pipeline.decodability import decodability_drop
from unitprobe.pipeline.nulls import fit_readout
from unitprobe.pipeline.probing import probe_model
from unitprobe.tasks import generate, get_preset

NO_CUDA = (
    "no CUDA device is available for device 'cuda' (this torch is a CPU-only build); "
    "use --device cpu or --device auto"
)
UNKNOWN = "must be one of cpu, cuda, auto (or cuda:N for GPU N)"
TINY = TrainConfig(n_units=3, epochs=4, batch_size=8, seed=2)
#: A light analysis: every stage runs, in about two seconds.
LIGHT = AnalyzeConfig.from_options(
    n_sequences=32, n_permutations=19, n_controls=1, null_units=128, n_null_interventions=1,
    n_pairs=32,
)  # fmt: skip
#: K[t], X[t], X[t-1] and a dead unit: roles, shared nulls, and directions for K[t-1].
TAPS = [(0, 0), (1, 0), (1, 1), None]
ANALYSIS_COMMANDS = {  # command -> its arguments after MODEL.pt, and what --out names
    "analyze": ("--n-permutations", 19, "--n-controls", 1, "--no-figures"),
    "probe": ("--n-permutations", 19, "--n-controls", 1),
    "ablate": (),
    "attribute": (),
    "patch": ("--n-pairs", 8, "--no-directions"),
}


@pytest.fixture(scope="module")
def data():
    return generate(get_preset("delay-1"), n_sequences=40, seed=0)


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine without a GPU, and a torch built without CUDA."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)


@pytest.fixture
def fake_gpus(monkeypatch):
    """torch reports two GPUs; initializing CUDA (touching a device) fails the test."""

    def untouchable(*args, **kwargs):
        raise AssertionError("CUDA was initialized")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "_lazy_init", untouchable)
    monkeypatch.setattr(torch.cuda, "current_device", untouchable)


@pytest.fixture(scope="module")
def wired(tmp_path_factory):
    """A hand-wired network of the seed task, as a Checkpoint and as a state_dict file."""
    spec = get_preset("seed")
    model = fit_readout(planted_lstm(2, TAPS, n_outputs=2), generate(spec, 64, seed=5))
    path = tmp_path_factory.mktemp("wired") / "wired.pt"
    torch.save(model.state_dict(), path)
    return Checkpoint(model=model, task=spec, path=path, source="state_dict")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def analysis_command(command, checkpoint, out, *extra):
    """``unitprobe COMMAND`` on a checkpoint, writing ``out`` (a CSV file or a directory)."""
    target = out.with_suffix(".csv") if command in ("probe", "ablate") else out
    args = (*ANALYSIS_COMMANDS[command], "--task", "seed", "--n-sequences", 24, "--quiet")
    return invoke(command, checkpoint, *args, "--out", target, *extra), target


def output_pairs(first, second) -> list:
    """The CSV files one :func:`analysis_command` wrote at ``first``, each beside the file of
    the same name another wrote at ``second``."""
    files = sorted(first.rglob("*.csv")) if first.is_dir() else [first]
    return [(p, second / p.relative_to(first) if first.is_dir() else second) for p in files]


def assert_same_tables(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def assert_close_tables(gpu: dict, cpu: dict, tol: float = 1e-5) -> None:
    """Same tables, keys and flags; numbers equal up to float rounding."""
    assert gpu.keys() == cpu.keys()
    for name in cpu:
        g, c = gpu[name], cpu[name]
        assert list(g.columns) == list(c.columns) and len(g) == len(c), name
        for column in c.columns:
            if pd.api.types.is_float_dtype(c[column]):
                np.testing.assert_allclose(
                    g[column].to_numpy(float), c[column].to_numpy(float), rtol=tol, atol=tol,
                    err_msg=f"{name}.{column}",
                )  # fmt: skip
            else:
                pd.testing.assert_series_equal(g[column], c[column], obj=f"{name}.{column}")


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
# resolving names
# ---------------------------------------------------------------------------------------------


def test_device_names():
    assert DEVICES == ("cpu", "cuda", "auto")
    assert [check_device(n) for n in ("cpu", "cuda", "cuda:1", "auto")] == [
        "cpu",
        "cuda",
        "cuda:1",
        "auto",
    ]
    assert check_device(torch.device("cuda", 1)) == "cuda:1"


def test_cpu_and_auto_resolve_to_the_cpu_without_a_gpu(no_cuda):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_is_the_cpu_on_this_machine_when_it_has_no_gpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_cuda_without_a_gpu_says_what_to_use_instead(no_cuda):
    with pytest.raises(UnitprobeError) as info:
        resolve_device("cuda")
    assert str(info.value) == NO_CUDA
    with pytest.raises(UnitprobeError) as info:
        resolve_device("cuda:1")
    assert str(info.value) == NO_CUDA.replace("'cuda'", "'cuda:1'")


def test_cuda_build_without_a_gpu_leaves_out_the_build_note(no_cuda, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    with pytest.raises(UnitprobeError) as info:
        resolve_device("cuda")
    assert str(info.value) == (
        "no CUDA device is available for device 'cuda'; use --device cpu or --device auto"
    )


def test_auto_and_cuda_resolve_to_the_gpu_without_touching_it(fake_gpus):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UnitprobeError) as info:
        resolve_device("cuda:2")
    assert str(info.value) == (
        "device == 'cuda:2', but torch sees 2 CUDA device(s): cuda:0 .. cuda:1"
    )


@pytest.mark.parametrize("name", ["gpu", "CUDA", "mps", "cuda:", "cuda:-1", "", 0, None])
def test_unknown_names_list_the_allowed_ones(name):
    with pytest.raises(UnitprobeError) as info:
        resolve_device(name)
    assert str(info.value) == f"device == {name!r}, {UNKNOWN}"
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


def test_training_on_the_cpu_is_bit_identical_to_the_default(data):
    default = train(data, TINY)
    again = train(data, TINY)
    explicit = train(data, TINY, device="cpu")
    as_device = train(data, TINY, device=torch.device("cpu"))
    for other in (again, explicit, as_device):
        assert_same_state(other.model.state_dict(), default.model.state_dict())
        assert other.history == default.history
        assert {k: v for k, v in other.metrics.items() if k != "train_seconds"} == {
            k: v for k, v in default.metrics.items() if k != "train_seconds"
        }


def test_auto_without_a_gpu_trains_on_the_cpu(data, no_cuda):
    auto = train(data, TINY, device="auto")
    assert_same_state(auto.model.state_dict(), train(data, TINY).model.state_dict())


def test_the_returned_model_is_on_the_cpu_in_eval_mode(data):
    model = train(data, TINY, device="cpu").model
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(b.device.type == "cpu" for b in model.buffers())
    assert not model.training


def test_train_refuses_bad_devices_before_training(data, no_cuda):
    with pytest.raises(UnitprobeError, match=UNKNOWN.replace("(", r"\(").replace(")", r"\)")):
        train(data, TINY, device="gpu")
    with pytest.raises(UnitprobeError) as info:
        train_task(get_preset("delay-1"), TINY, n_sequences=8, device="cuda")  # passed through
    assert str(info.value) == NO_CUDA


def test_train_task_passes_the_device_through(data):
    spec = get_preset("delay-1")
    default = train_task(spec, TINY, n_sequences=40)[1]
    explicit = train_task(spec, TINY, n_sequences=40, device="cpu")[1]
    assert_same_state(explicit.model.state_dict(), default.model.state_dict())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_equals_the_cpu_up_to_rounding(data):
    cpu = train(data, TINY)
    gpu = train(data, TINY, device="cuda")
    assert all(p.device.type == "cpu" for p in gpu.model.parameters())
    assert gpu.metrics["val_mse"] == pytest.approx(cpu.metrics["val_mse"], abs=1e-4)
    assert gpu.metrics["best_epoch"] == cpu.metrics["best_epoch"]
    for name, value in cpu.model.state_dict().items():
        np.testing.assert_allclose(gpu.model.state_dict()[name], value, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------------


def test_train_on_cuda_without_a_gpu_is_one_line_and_writes_nothing(tmp_path, no_cuda):
    out = tmp_path / "m.pt"
    result = invoke("train", "--task", "delay-1", "--epochs", 1, "--device", "cuda", "--out", out)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {NO_CUDA}"]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unknown_device_is_a_usage_error(tmp_path):
    result = invoke("train", "--task", "delay-1", "--device", "gpu", "--out", tmp_path / "m.pt")
    assert result.exit_code == 2 and "'gpu' is not one of 'cpu', 'cuda', 'auto'" in result.output


@pytest.mark.parametrize("command", ["train", "sweep", *ANALYSIS_COMMANDS])
def test_help_lists_the_device_option(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # as wrapped at any terminal width
    where = {"train": "Where to train", "sweep": "Where to train and analyze"}.get(
        command, "Where to run the model"
    )
    assert f"--device [cpu|cuda|auto] {where} (auto: cuda when there is a GPU)" in text
    assert "a GPU. [default: cpu]" in text


def test_sweep_on_cuda_without_a_gpu_is_one_line_and_writes_nothing(tmp_path, no_cuda):
    out = tmp_path / "SWEEP"
    args = ("sweep", "--task", "delay-1", "--units", 1, "--seeds", 1, "--quick")
    result = invoke(*args, "--device", "cuda", "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {NO_CUDA}"]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# sweeps: the device reaches the training, never the key or result.json
# ---------------------------------------------------------------------------------------------


def test_sweep_hands_the_resolved_device_to_every_run(tmp_path, monkeypatch):
    seen: list[tuple[str, str]] = []

    def fake_run(config, runs_dir, *, figures=False, device="cpu"):
        seen.append((config.key, device))
        return {"status": "ok"}

    monkeypatch.setattr(SW, "run_config", fake_run)
    plan = SW.plan_sweep(["delay-1"], [1, 2], 1)
    SW.run_sweep(["delay-1"], [1, 2], 1, tmp_path / "S", device="cpu", progress=False)
    assert seen == [(c.key, "cpu") for c in plan]
    seen.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    SW.run_sweep(["delay-1"], [1, 2], 1, tmp_path / "T", device="auto", progress=False)
    assert seen == [(c.key, "cpu") for c in plan]  # resolved once, before the runs


def test_sweep_checks_the_device_name_before_connecting_to_a_scheduler(tmp_path):
    with pytest.raises(UnitprobeError, match="device == 'gpu'"):
        SW.run_sweep(["delay-1"], [1], 1, tmp_path / "S", scheduler="tcp://0:1", device="gpu")
    assert not (tmp_path / "S").exists()


def test_run_config_trains_on_its_device_and_stores_no_device(tmp_path, monkeypatch):
    devices: list[str] = []

    def stop_training(*args, device, **kwargs):
        devices.append(device)
        raise ValueError("stop")

    monkeypatch.setattr(SW, "train_task", stop_training)
    config = SW.plan_sweep(["delay-1"], [1], [0])[0]
    result = SW.run_config(config, tmp_path, device="cpu")
    assert devices == ["cpu"]
    assert result["status"] == "failed" and result["error"] == "ValueError: stop"
    stored = (tmp_path / config.name / "result.json").read_text()
    assert "device" not in stored and json.loads(stored)["key"] == config.key
    assert SW.config_key(json.loads(stored)["config"]) == config.key


# ---------------------------------------------------------------------------------------------
# the analysis: on the model's device, the device never stored
# ---------------------------------------------------------------------------------------------


def test_on_device_returns_the_model_itself_where_it_already_is(no_cuda):
    model = planted_lstm(2, TAPS, n_outputs=2)
    assert on_device(model, "cpu") is model
    assert on_device(model, torch.device("cpu")) is model
    assert on_device(model, "auto") is model  # auto without a GPU is the CPU
    with pytest.raises(UnitprobeError) as info:
        on_device(model, "cuda")
    assert str(info.value) == NO_CUDA


def test_full_float32_turns_tf32_off_on_a_gpu_and_restores_it(monkeypatch):
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    with full_float32():  # no GPU: the flags are not touched
        assert (cudnn.allow_tf32, matmul.allow_tf32) == before
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError), full_float32():
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
        raise ValueError("restored after an exception too")
    assert (cudnn.allow_tf32, matmul.allow_tf32) == before


def test_the_analysis_on_the_cpu_is_bit_identical_to_the_default(wired, monkeypatch):
    default = compute_analysis(wired, LIGHT)
    explicit = compute_analysis(wired, LIGHT, device="cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    auto = compute_analysis(wired, LIGHT, device="auto")  # the CPU: no GPU
    for other in (explicit, auto):
        assert_same_tables(other.tables, default.tables)
        same = {k: v for k, v in other.summary.items() if k != "wall_seconds"}
        assert same == {k: v for k, v in default.summary.items() if k != "wall_seconds"}
    assert "device" not in json.dumps(default.summary)  # how it ran, not what it found
    assert all(p.device.type == "cpu" for p in wired.model.parameters())


def test_the_analysis_on_cuda_without_a_gpu_is_refused_before_anything_is_written(
    wired, tmp_path, no_cuda
):
    with pytest.raises(UnitprobeError) as info:
        compute_analysis(wired, LIGHT, device="cuda")
    assert str(info.value) == NO_CUDA
    with pytest.raises(UnitprobeError, match="no CUDA device"):
        analyze(wired, tmp_path / "results", LIGHT, device="cuda", figures=False)
    with pytest.raises(UnitprobeError, match="device == 'gpu'"):
        analyze(wired, tmp_path / "results", LIGHT, device="gpu", figures=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", list(ANALYSIS_COMMANDS))
def test_analysis_commands_on_cuda_without_a_gpu_are_one_line_and_write_nothing(
    command, wired, tmp_path, no_cuda
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result, _ = analysis_command(command, wired.path, out_dir / "result", "--device", "cuda")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {NO_CUDA}"]
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("command", list(ANALYSIS_COMMANDS))
def test_analysis_commands_on_the_cpu_write_the_default_bytes(command, wired, tmp_path):
    default, first = analysis_command(command, wired.path, tmp_path / "default")
    explicit, second = analysis_command(command, wired.path, tmp_path / "cpu", "--device", "cpu")
    assert default.exit_code == 0 and explicit.exit_code == 0, default.output + explicit.output
    pairs = output_pairs(first, second)
    assert pairs
    for path, twin in pairs:
        assert path.read_bytes() == twin.read_bytes(), path.name
    if command == "analyze":
        assert "device" not in (first / "summary.json").read_text()


# ---------------------------------------------------------------------------------------------
# on a GPU: the same as the CPU up to float rounding
# ---------------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("exact", ["screen", "all"])
def test_the_analysis_on_cuda_equals_the_cpu(wired, exact):
    config = LIGHT.replace(exact_interchange=exact, exact_ablation=exact)
    cpu = compute_analysis(wired, config)
    gpu = compute_analysis(wired, config, device="cuda")
    assert_close_tables(gpu.tables, cpu.tables)
    assert gpu.tables["roles"]["role"].tolist() == ["K[t]", "X[t]", "X[t-1]", "none"]
    assert all(p.device.type == "cpu" for p in wired.model.parameters())  # never moved


@needs_cuda
def test_the_methods_on_cuda_equal_the_cpu(wired):
    data = generate(get_preset("seed"), 24, seed=1)
    cpu, gpu = wired.model, on_device(wired.model, "cuda")
    assert next(gpu.parameters()).is_cuda and cpu is wired.model
    for screen in (None, 1):  # exact patches, and the screen's gradient through the kernel
        kw = {"n_pairs": 16, "screen": screen}
        assert_close_tables(
            {"i": interchange_table(gpu, data, **kw)}, {"i": interchange_table(cpu, data, **kw)}
        )
    kw = {"config": ProbeConfig(n_controls=1, n_permutations=19)}
    assert_close_tables(
        dict(enumerate(probe_model(gpu, data, **kw))), dict(enumerate(probe_model(cpu, data, **kw)))
    )
    for exact in ("screen", "all"):
        assert_close_tables(
            {"a": ablation_table(gpu, data, exact=exact)},
            {"a": ablation_table(cpu, data, exact=exact)},
        )
    names = (data.input_names, data.output_names)
    assert_close_tables(
        attribution_tables(gpu, data.inputs, *names), attribution_tables(cpu, data.inputs, *names)
    )
    lagged = np.stack([data.raw["K"], np.roll(data.raw["K"], 1, axis=1)], axis=-1)
    kw = {"units": [0, [1, 2]], "modes": ("zero", "mean"), "step": 4}
    assert_close_tables(
        {"d": decodability_drop(gpu, data, lagged, ["K", "K1"], **kw)},
        {"d": decodability_drop(cpu, data, lagged, ["K", "K1"], **kw)},
    )


@needs_cuda
def test_suffix_outputs_are_differentiable_on_cuda(wired):
    x = torch.as_tensor(generate(get_preset("seed"), 8, seed=2).inputs)
    grads = []
    for model in (wired.model, on_device(wired.model, "cuda")):
        inputs = x.to(next(model.parameters()).device)
        with torch.no_grad():
            trace = run(model, inputs, record=("h", "c"))
        steps = torch.arange(8, device=inputs.device) % inputs.shape[1]
        rows = torch.arange(8, device=inputs.device)
        h = trace.h[0, rows, steps].clone().requires_grad_(True)
        c = trace.c[0, rows, steps]
        y = suffix_outputs(model, inputs, steps, h, c, trace.outputs)
        (grad,) = torch.autograd.grad(y.sum(), [h])
        grads.append(grad.cpu().numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-5)


@needs_cuda
@pytest.mark.parametrize("command", list(ANALYSIS_COMMANDS))
def test_analysis_commands_on_cuda_equal_the_cpu(command, wired, tmp_path):
    cpu, first = analysis_command(command, wired.path, tmp_path / "cpu")
    gpu, second = analysis_command(command, wired.path, tmp_path / "gpu", "--device", "cuda")
    assert cpu.exit_code == 0 and gpu.exit_code == 0, cpu.output + gpu.output
    pairs = output_pairs(first, second)
    read = {p.name: pd.read_csv(p) for p, _ in pairs}
    twins = {p.name: pd.read_csv(twin) for p, twin in pairs}
    assert_close_tables(twins, read)
