"""Tests of unitprobe.devices and ``--device``: resolving names, training on a device (CPU
here; the CUDA test runs only where there is a GPU), the command line and the sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from unitprobe import sweep as SW
from unitprobe.cli import main
from unitprobe.devices import DEVICES, check_device, resolve_device
from unitprobe.errors import UnitprobeError
from unitprobe.model.train import TrainConfig, train, train_task
from unitprobe.tasks import generate, get_preset

NO_CUDA = (
    "no CUDA device is available for device 'cuda' (this torch is a CPU-only build); "
    "use --device cpu or --device auto"
)
UNKNOWN = "must be one of cpu, cuda, auto (or cuda:N for GPU N)"
TINY = TrainConfig(n_units=3, epochs=4, batch_size=8, seed=2)


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


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


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


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_help_lists_the_device_option(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # as wrapped at any terminal width
    assert "--device [cpu|cuda|auto] Where to train" in text and "a GPU. [default: cpu]" in text


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
