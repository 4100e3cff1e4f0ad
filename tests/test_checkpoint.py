import os
import pickle

import pytest
import torch

from unitprobe.errors import CheckpointError
from unitprobe.model.checkpoint import load, save
from unitprobe.model.lstm import ModelConfig, UnitLSTM
from unitprobe.tasks import get_preset


@pytest.fixture
def seed_task():
    return get_preset("seed")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return UnitLSTM(ModelConfig(n_inputs=2, n_units=4, n_outputs=2))


class _Marker:
    """Unpickling this writes a file: stands for arbitrary code in a hostile checkpoint."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_roundtrip_with_weights_only_load(tmp_path, model, seed_task):
    path = save(
        tmp_path / "m.pt",
        model,
        seed_task,
        history={"val_loss": [1.0, 0.5]},
        metrics={"val_mse": 0.5},
    )
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "unitprobe" and raw["version"] == 1
    assert raw["config"] == {"n_inputs": 2, "n_units": 4, "n_outputs": 2, "n_layers": 1}
    rebuilt = UnitLSTM(ModelConfig(**raw["config"]))
    rebuilt.load_state_dict(raw["state_dict"])
    ckpt = load(path)
    assert ckpt.source == "unitprobe"
    assert ckpt.task == seed_task
    assert ckpt.history == {"val_loss": [1.0, 0.5]}
    for key, value in model.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[key], value)
        assert torch.equal(rebuilt.state_dict()[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


def test_foreign_state_dict_needs_a_task_and_infers_the_config(tmp_path, model, seed_task):
    path = tmp_path / "foreign.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(
        CheckpointError, match="plain state_dict with no task; pass --task NAME or --task-file"
    ):
        load(path)
    ckpt = load(path, task=seed_task)
    assert ckpt.source == "state_dict"
    assert ckpt.config == ModelConfig(n_inputs=2, n_units=4, n_outputs=2, n_layers=1)
    x = torch.randn(3, 5, 2)
    assert torch.equal(ckpt.model(x), model(x))


def test_two_layer_foreign_state_dict(tmp_path, seed_task):
    model = UnitLSTM(ModelConfig(n_inputs=2, n_units=3, n_outputs=2, n_layers=2))
    torch.save(model.state_dict(), tmp_path / "two.pt")
    assert load(tmp_path / "two.pt", task=seed_task).config.n_layers == 2


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint .*nope\.pt does not exist"):
        load(tmp_path / "nope.pt")


def test_empty_file(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty \(0 bytes\)"):
        load(tmp_path / "empty.pt")


def test_not_a_torch_file(tmp_path):
    (tmp_path / "notes.pt").write_text("hello, this is text")
    with pytest.raises(CheckpointError, match=r"notes\.pt is not a torch file"):
        load(tmp_path / "notes.pt")


def test_truncated_file(tmp_path, model, seed_task):
    path = save(tmp_path / "m.pt", model, seed_task)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is truncated or corrupt"):
        load(path)


def test_unknown_format_version(tmp_path, model, seed_task):
    path = save(tmp_path / "m.pt", model, seed_task)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 7
    torch.save(payload, path)
    with pytest.raises(
        CheckpointError, match="checkpoint version 7; this unitprobe reads version 1"
    ):
        load(path)


def test_missing_keys_are_listed(tmp_path, model, seed_task):
    state = model.state_dict()
    del state["lstm.bias_hh_l0"], state["readout.bias"]  # a readout may have no bias
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="missing keys: lstm.bias_hh_l0$"):
        load(tmp_path / "m.pt", task=seed_task)


def test_extra_keys_are_listed(tmp_path, model, seed_task):
    state = model.state_dict()
    state["lstm.weight_hr_l0"] = torch.zeros(1)
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="'lstm.weight_hr_l0' shows an LSTM with proj_size"):
        load(tmp_path / "m.pt", task=seed_task)


def test_shape_mismatch_names_key_and_shapes(tmp_path, model, seed_task):
    path = save(tmp_path / "m.pt", model, seed_task)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["lstm.weight_hh_l0"] = torch.zeros(16, 5)
    torch.save(payload, path)
    with pytest.raises(
        CheckpointError, match=r"lstm.weight_hh_l0 has shape \(16, 5\), expected \(16, 4\)"
    ):
        load(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights(tmp_path, model, seed_task, bad):
    state = model.state_dict()
    state["readout.weight"][0, 1] = bad
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"readout.weight has 1 NaN or infinite value\(s\)"):
        load(tmp_path / "m.pt", task=seed_task)


def test_integer_weights(tmp_path, model, seed_task):
    state = model.state_dict()
    state["readout.bias"] = torch.zeros(2, dtype=torch.int64)
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(
        CheckpointError, match="readout.bias has dtype torch.int64, expected a float tensor"
    ):
        load(tmp_path / "m.pt", task=seed_task)


def test_pickled_module_needs_the_unsafe_flag(tmp_path, model, seed_task):
    torch.save(model, tmp_path / "module.pt")
    with pytest.raises(CheckpointError, match="contains pickled Python objects.*--unsafe-load"):
        load(tmp_path / "module.pt", task=seed_task)
    ckpt = load(tmp_path / "module.pt", task=seed_task, unsafe=True)
    assert ckpt.source == "module"
    assert torch.equal(ckpt.model.readout.weight, model.readout.weight)


def test_hostile_pickle_never_runs_without_the_flag(tmp_path, seed_task):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"lstm.weight_ih_l0": _Marker(marker)}, fh, protocol=2)
    with pytest.raises(CheckpointError):
        load(tmp_path / "evil.pt", task=seed_task)
    assert not marker.exists()
    torch.save({"payload": _Marker(marker)}, tmp_path / "evil_zip.pt")
    marker.unlink(missing_ok=True)  # torch.save itself does not unpickle; make sure
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load(tmp_path / "evil_zip.pt", task=seed_task)
    assert not marker.exists()


def test_task_must_fit_the_model(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "m.pt")
    with pytest.raises(
        CheckpointError,
        match=r"task 'fibonacci' has 1 input\(s\) \(K\), but the model .* expects 2",
    ):
        load(tmp_path / "m.pt", task=get_preset("fibonacci"))


def test_directory_and_unreadable(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load(tmp_path)
    if os.geteuid() != 0:  # root reads anything
        path = tmp_path / "locked.pt"
        path.write_bytes(b"PK\x03\x04")
        path.chmod(0)
        with pytest.raises(CheckpointError, match="cannot read checkpoint"):
            load(path)


def test_save_is_atomic_and_checks_the_directory(tmp_path, model, seed_task):
    with pytest.raises(CheckpointError, match="directory .*missing does not exist"):
        save(tmp_path / "missing" / "m.pt", model, seed_task)
