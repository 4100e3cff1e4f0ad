"""Foreign checkpoints as people save them: every layout loads to the same weights."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from unitprobe.cli import main
from unitprobe.errors import CheckpointError
from unitprobe.model.checkpoint import load
from unitprobe.model.layouts import find_layout
from unitprobe.tasks import get_preset


class Net(nn.Module):
    """An nn.LSTM and an nn.Linear under names of the user's choosing."""

    def __init__(self, rnn: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.rnn, self.fc = rnn, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0])


def _trained(rnn: nn.Module | None = None, head: nn.Module | None = None) -> Net:
    """A few Adam steps on random data, so no weight is at its initial value."""
    torch.manual_seed(0)
    net = Net(rnn or nn.LSTM(2, 5, batch_first=True), head or nn.Linear(5, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x, y = torch.randn(16, 7, 2), torch.randn(16, 7, 2)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return net


def _plain(net: Net) -> dict[str, torch.Tensor]:
    state = net.state_dict()
    return {k.replace("rnn.", "lstm.").replace("fc.", "readout."): v for k, v in state.items()}


def _prefixed(state: dict[str, torch.Tensor], lstm: str, head: str) -> dict[str, torch.Tensor]:
    return {k.replace("rnn.", lstm).replace("fc.", head): v for k, v in state.items()}


def _layouts(net: Net) -> dict[str, object]:
    opt = torch.optim.Adam(net.parameters())
    state = net.state_dict()
    return {
        "plain": _plain(net),
        "state_dict": {"state_dict": _plain(net)},
        "tutorial": {"epoch": 3, "model_state_dict": state, "loss": 0.5,
                     "optimizer_state_dict": opt.state_dict()},
        "lightning": {"epoch": 3, "global_step": 12,
                      "state_dict": _prefixed(state, "model.rnn.", "model.fc."),
                      "optimizer_states": [opt.state_dict()]},
        "encoder_head": _prefixed(state, "encoder.lstm.", "head."),
        "data_parallel": {"model": _prefixed(state, "module.rnn.", "module.fc.")},
    }  # fmt: skip


@pytest.mark.parametrize("layers", [1, 2])
def test_every_layout_loads_to_the_same_weights(tmp_path, layers):
    net = _trained(nn.LSTM(2, 5, num_layers=layers, batch_first=True))
    task = get_preset("seed")
    loaded = {}
    for name, obj in _layouts(net).items():
        torch.save(obj, tmp_path / f"{name}.pt")
        loaded[name] = load(tmp_path / f"{name}.pt", task=task).model.state_dict()
    plain = loaded.pop("plain")
    assert plain["lstm.weight_hh_l0"].shape == (20, 5) and len(plain) == 4 * layers + 2
    for name, state in loaded.items():
        assert state.keys() == plain.keys(), name
        assert all(torch.equal(state[k], plain[k]) for k in plain), name
    # and the network computes what the user's module computes
    x = torch.randn(3, 7, 2)
    model = load(tmp_path / "lightning.pt", task=task).model
    torch.testing.assert_close(model(x), net(x), rtol=0, atol=1e-6)


def test_layers_without_biases_read_as_zero_biases(tmp_path):
    net = _trained(nn.LSTM(2, 5, bias=False, batch_first=True), nn.Linear(5, 2, bias=False))
    torch.save({"model_state_dict": net.state_dict()}, tmp_path / "m.pt")
    model = load(tmp_path / "m.pt", task=get_preset("seed")).model
    assert not model.lstm.bias_ih_l0.any() and not model.readout.bias.any()
    x = torch.randn(3, 7, 2)
    torch.testing.assert_close(model(x), net(x), rtol=0, atol=1e-6)


def test_the_layout_says_where_it_found_each_part():
    net = _trained()
    layout = find_layout(_layouts(net)["lightning"])
    assert (layout.where, layout.lstm, layout.n_layers, layout.readout) == (
        ("state_dict",),
        "model.rnn.",
        1,
        "model.fc.",
    )
    assert layout.describe() == (
        "LSTM at 'model.rnn.*' (1 layer(s)) and readout at 'model.fc.*' in ['state_dict']"
    )


@pytest.mark.parametrize(
    ("rnn", "head", "message"),
    [
        (nn.LSTM(2, 5, bidirectional=True, batch_first=True), nn.Linear(10, 2),
         "'rnn.weight_ih_l0_reverse' shows a bidirectional LSTM"),
        (nn.LSTM(2, 5, proj_size=3, batch_first=True), nn.Linear(3, 2),
         "'rnn.weight_hr_l0' shows an LSTM with proj_size"),
        (nn.GRU(2, 5, batch_first=True), nn.Linear(5, 2),
         r"'rnn.weight_hh_l0' has shape \(15, 5\): a GRU, not an LSTM"),
        (nn.RNN(2, 5, batch_first=True), nn.Linear(5, 2),
         r"'rnn.weight_hh_l0' has shape \(5, 5\): a plain RNN, not an LSTM"),
        (None, nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)),
         "the head is more than one linear layer after the LSTM: fc.2.bias, fc.2.weight"),
    ],
)  # fmt: skip
def test_what_cannot_be_analyzed_is_refused_by_its_key(tmp_path, rnn, head, message):
    torch.manual_seed(0)
    net = Net(rnn or nn.LSTM(2, 5, batch_first=True), head)
    torch.save(net.state_dict(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=message):
        load(tmp_path / "m.pt", task=get_preset("seed"))


def test_ambiguous_checkpoints_name_the_candidates_and_flags_choose(tmp_path):
    net, other = _trained(), _trained(head=nn.Linear(5, 2))
    two_lstms = {**_prefixed(net.state_dict(), "a.rnn.", "a.fc."),
                 **_prefixed(other.state_dict(), "b.rnn.", "b.fc.")}  # fmt: skip
    torch.save(two_lstms, tmp_path / "two.pt")
    task = get_preset("seed")
    with pytest.raises(CheckpointError, match=r"several LSTMs \('a.rnn.', 'b.rnn.'\); choose one "
                       "with --lstm KEY_PREFIX"):  # fmt: skip
        load(tmp_path / "two.pt", task=task)
    with pytest.raises(CheckpointError, match="several linear layers read the LSTM's 5 units "
                       r"\('a.fc.', 'b.fc.'\); choose one with --readout KEY_PREFIX"):  # fmt: skip
        load(tmp_path / "two.pt", task=task, lstm="a.rnn.")
    chosen = load(tmp_path / "two.pt", task=task, lstm="b.rnn.", readout="b.fc.").model
    assert torch.equal(chosen.readout.weight, other.fc.weight)
    assert torch.equal(chosen.lstm.weight_hh_l0, other.rnn.weight_hh_l0)
    with pytest.raises(CheckpointError, match="no LSTM at --lstm 'c.rnn.'"):
        load(tmp_path / "two.pt", task=task, lstm="c.rnn.")
    with pytest.raises(CheckpointError, match="no linear readout of 5 units at --readout 'x.'"):
        load(tmp_path / "two.pt", task=task, lstm="a.rnn.", readout="x.")


def test_the_command_line_reads_a_lightning_checkpoint_as_the_plain_one(tmp_path):
    layouts = _layouts(_trained())
    runner = CliRunner()
    out = {}
    for name in ("plain", "lightning"):
        torch.save(layouts[name], tmp_path / f"{name}.pt")
        result = runner.invoke(main, ["probe", str(tmp_path / f"{name}.pt"), "--task", "seed",
                                      "--n-sequences", "32", "--n-permutations", "19",
                                      "--out", str(tmp_path / f"{name}.csv")])  # fmt: skip
        assert result.exit_code == 0, result.output
        out[name] = (tmp_path / f"{name}.csv").read_bytes()
    assert out["plain"] == out["lightning"]
    two = {**_prefixed(layouts["encoder_head"], "", ""), "aux.weight": torch.zeros(2, 5)}
    torch.save(two, tmp_path / "two.pt")
    result = runner.invoke(main, ["probe", str(tmp_path / "two.pt"), "--task", "seed",
                                  "--out", str(tmp_path / "two.csv")])  # fmt: skip
    assert result.exit_code == 1 and "--readout KEY_PREFIX" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "two.csv").exists()


def test_a_live_module_gives_the_tables_of_its_saved_file(tmp_path):
    from unitprobe import Checkpoint, compute_analysis
    from unitprobe.config import AnalyzeConfig

    net = _trained()
    live = Checkpoint.from_modules(net.rnn, net.fc, "seed")
    torch.save(net.state_dict(), tmp_path / "net.pt")  # rnn.* / fc.*: found without flags
    saved = load(tmp_path / "net.pt", task=get_preset("seed"))
    assert all(torch.equal(v, saved.model.state_dict()[k])
               for k, v in live.model.state_dict().items())  # fmt: skip
    net.fc.weight.data.zero_()  # a copy: the user's module may change afterwards
    assert live.model.readout.weight.abs().sum() > 0
    light = AnalyzeConfig.from_options(
        n_sequences=32, n_permutations=19, n_controls=1, null_units=128, n_null_interventions=1,
        n_pairs=32,
    )  # fmt: skip
    a, b = compute_analysis(live, light).tables, compute_analysis(saved, light).tables
    for name in ("roles", "terms", "probes"):
        assert a[name].to_csv(index=False) == b[name].to_csv(index=False), name
    weight, bias = torch.randn(2, 5), None
    tupled = Checkpoint.from_modules(nn.LSTM(2, 5), (weight, bias), get_preset("seed"))
    assert torch.equal(tupled.model.readout.weight, weight) and not tupled.model.readout.bias.any()
    with pytest.raises(CheckpointError, match="^lstm is a GRU, expected an nn.LSTM$"):
        Checkpoint.from_modules(nn.GRU(2, 5), net.fc, "seed")
    with pytest.raises(CheckpointError, match="^readout is a ReLU, expected an nn.Linear or"):
        Checkpoint.from_modules(net.rnn, nn.ReLU(), "seed")
    with pytest.raises(CheckpointError, match="'lstm.weight_ih_l0_reverse' shows a bidirectional"):
        Checkpoint.from_modules(nn.LSTM(2, 5, bidirectional=True), nn.Linear(10, 2), "seed")
