"""Seeded, deterministic training of a :class:`~unitprobe.model.lstm.UnitLSTM` on a task dataset.

Adam on the mean squared error of every output at every step (normalized units), minibatches
of whole sequences, a validation split by sequence, gradient-norm clipping, a learning rate
halved when validation stalls, and early stopping that restores the best weights. Training
knows nothing about probes: it returns the model with a plain-data history and metrics.

On CPU the same data and seed give a bit-identical ``state_dict``. Training runs on one CPU
thread: for these small models that is the fastest setting, and it makes the numbers
independent of the machine's core count.

``device="cuda"`` (or ``"auto"``, :mod:`unitprobe.devices`) trains on a GPU: the same
initialization (drawn on the CPU) and the same minibatch order (a CPU generator) as on the
CPU, so the result equals the CPU's up to float rounding, not bit for bit. The device is how
a model is trained, not what it is: it is no field of :class:`TrainConfig`, and the returned
model is back on the CPU, where checkpoints and the analysis live.

Example
-------
>>> from unitprobe.tasks import generate, get_preset
>>> data = generate(get_preset("seed"), n_sequences=512, seed=0)
>>> result = train(data, TrainConfig(n_units=8, seed=0))
>>> result.metrics["val_mse"] <= 0.01 * result.metrics["baseline_mse"]
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from unitprobe._utils import stderr_is_tty
from unitprobe.devices import DEFAULT_DEVICE, resolve_device
from unitprobe.errors import TrainingError
from unitprobe.model.lstm import ModelConfig, UnitLSTM
from unitprobe.model.threads import torch_threads
from unitprobe.tasks import baseline_mse, generate
from unitprobe.tasks.baselines import BASELINES, baseline_scores, ratios_to_baselines
from unitprobe.validation import check_float, check_int

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "train_task",
    "init_model",
    "split_sequences",
    "repeat_last_mse",
    "held_out_metrics",
]


#: Largest seed: torch and NumPy take any seed in ``[0, 2**63)``.
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of :func:`train` (stored in the checkpoint as plain data).

    Parameters
    ----------
    n_units : int
        Hidden units per layer.
    n_layers : int
        LSTM layers.
    epochs : int
        Maximum passes over the training sequences.
    batch_size : int
        Sequences per minibatch.
    lr : float
        Adam learning rate; halved after ``patience // 2`` epochs without improvement.
    weight_decay : float
        Adam L2 penalty.
    val_fraction : float
        Share of sequences held out for validation (at least one sequence each side).
    patience : int
        Epochs without a validation improvement before stopping.
    clip : float
        Maximum global gradient norm.
    seed : int
        Seeds initialization, the split and the minibatch order.
    """

    n_units: int = 8
    n_layers: int = 1
    epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 0.0
    val_fraction: float = 0.2
    patience: int = 40
    clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_units", "n_layers", "epochs", "batch_size", "patience"):
            check_int(getattr(self, name), name, minimum=1)
        check_float(self.lr, "lr", minimum=0, strict_minimum=True)
        check_float(self.weight_decay, "weight_decay", minimum=0)
        check_float(
            self.val_fraction, "val_fraction", minimum=0, maximum=1,
            strict_minimum=True, strict_maximum=True,
        )  # fmt: skip
        check_float(self.clip, "clip", minimum=0, strict_minimum=True)
        check_int(self.seed, "seed", minimum=0, maximum=MAX_SEED)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


@dataclass
class TrainResult:
    """The trained model (best validation epoch, on the CPU), its history and metrics.

    ``history`` has one entry per epoch in each list (``train_loss``, ``val_loss``, ``lr``);
    ``metrics`` has ``val_mse``, ``val_mse_per_output``, ``baseline_mse`` (repeat the last
    value, same validation sequences), ``mse_ratio`` (``val_mse / baseline_mse``),
    ``best_epoch``, ``epochs_run`` and ``train_seconds``; and, against the four baselines of
    :mod:`unitprobe.tasks.baselines` fitted on the training sequences and scored on the
    validation sequences: ``val_step_nmse`` (the per-step normalized error), for each
    baseline ``b`` ``mse_ratio_b`` and ``step_ratio_b`` (the network's pooled and per-step
    error divided by the baseline's; below 1 beats it), ``baselines`` (per baseline: ``mse``,
    ``step_nmse``, ``order``) and ``ar_order`` (the chosen order of ``linear_ar``).
    """

    model: UnitLSTM
    history: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def split_sequences(
    n_sequences: int, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of sequence indices into (train, validation), each sorted.

    Parameters
    ----------
    n_sequences : int
        At least 2.
    """
    if n_sequences < 2:
        raise TrainingError(
            f"need at least 2 sequences to split train/validation, got {n_sequences}"
        )
    order = np.random.default_rng(seed).permutation(n_sequences)
    n_val = min(max(1, round(val_fraction * n_sequences)), n_sequences - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def held_out_metrics(model: UnitLSTM, dataset: Any) -> dict[str, float]:
    """A trained model's error on held-out sequences (e.g. the later part of a time split),
    and its ratio to repeating the last value on the same sequences.

    Returns ``holdout_mse`` (mean over sequences, steps and outputs; normalized units),
    ``holdout_baseline_mse`` (:func:`repeat_last_mse`), ``holdout_ratio`` (their ratio, NaN
    when the baseline is 0) and ``holdout_sequences``. The model is put in eval mode.
    """
    with torch.no_grad():
        pred = model.eval()(torch.as_tensor(np.asarray(dataset.inputs))).cpu().numpy()
    mse = float(np.mean((pred.astype(np.float64) - dataset.targets) ** 2))
    base = repeat_last_mse(dataset)
    return {
        "holdout_mse": mse,
        "holdout_baseline_mse": base,
        "holdout_ratio": mse / base if base > 0 else math.nan,
        "holdout_sequences": int(dataset.n_sequences),
    }


def repeat_last_mse(dataset: Any, index: np.ndarray | None = None) -> float:
    """MSE of the "repeat the last value" predictor on (a subset of) a dataset.

    Uses :func:`unitprobe.tasks.baseline_mse`; normalized units, mean over outputs and steps.
    """
    return float(baseline_mse(dataset if index is None else dataset.subset(index)))


def train(
    dataset: Any,
    config: TrainConfig | None = None,
    *,
    progress: bool | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    validation: Any | None = None,
    device: str | torch.device = DEFAULT_DEVICE,
    model: UnitLSTM | None = None,
    constrain: Callable[[UnitLSTM], None] | None = None,
) -> TrainResult:
    """Train a :class:`UnitLSTM` on ``dataset`` (its ``inputs`` and ``targets``).

    Parameters
    ----------
    dataset : Dataset
        ``inputs`` of shape (n_sequences, n_steps, n_inputs) and ``targets`` of shape
        (n_sequences, n_steps, n_outputs), normalized.
    config : TrainConfig, optional
        Default ``TrainConfig()``.
    progress : bool, optional
        Show a progress bar; default: only when stderr is a terminal.
    on_epoch : callable ``(epoch, record) -> None``, optional
        Called after every epoch with that epoch's history record (plain floats).
    validation : Dataset, optional
        Separate validation sequences (e.g. the validation block of a series split in time,
        the middle part of :func:`unitprobe.tasks.split_in_time_validated`; never the
        held-out part, which must stay unseen): then every sequence of ``dataset`` trains,
        early stopping and the validation metrics use these, and ``config.val_fraction`` is
        not used. Same features as ``dataset``; any number of steps.
    device : {"cpu", "cuda", "cuda:N", "auto"} or torch.device, default "cpu"
        Where to train (the model, the minibatches and the validation data;
        :func:`unitprobe.devices.resolve_device`). Initialization and minibatch order are
        drawn on the CPU, so every device sees the same ones.
    model : UnitLSTM, optional
        Start from this network instead of a fresh one (:func:`init_model` with
        ``config.seed``). Its config must be the one the data and ``config`` give; it is
        trained in place and becomes the result's ``model``.
    constrain : callable ``(model) -> None``, optional
        Called under ``torch.no_grad()`` after every optimizer step, e.g. to put weights back
        onto a constraint (:func:`unitprobe.model.masked.train_masked` keeps masked weights at
        zero).

    Returns
    -------
    TrainResult
        Its ``model`` is on the CPU whatever ``device`` was, in eval mode; ``metrics`` are
        computed on the CPU from that model.

    Raises
    ------
    TrainingError
        The loss became NaN or infinite (with the epoch and a smaller learning rate to try).
        ``model`` does not fit the data and ``config``.
    UnitprobeError
        An unknown ``device``, or ``cuda`` where torch sees no CUDA device.
    """
    config = config or TrainConfig()
    device = resolve_device(device)
    x_all = torch.as_tensor(np.asarray(dataset.inputs), dtype=torch.float32)
    y_all = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.float32)
    if x_all.ndim != 3 or y_all.ndim != 3 or x_all.shape[:2] != y_all.shape[:2]:
        raise TrainingError(
            f"inputs {tuple(x_all.shape)} and targets {tuple(y_all.shape)} must be "
            "(n_sequences, n_steps, features) with the same first two dimensions"
        )
    if not (torch.isfinite(x_all).all() and torch.isfinite(y_all).all()):
        raise TrainingError("inputs or targets contain NaN or infinite values")
    if validation is None:
        train_idx, val_idx = split_sequences(x_all.shape[0], config.val_fraction, config.seed)
        train_part, val_part = _part(dataset, train_idx), _part(dataset, val_idx)
        x_train, y_train, x_val, y_val = (
            x_all[train_idx],
            y_all[train_idx],
            x_all[val_idx],
            y_all[val_idx],
        )
    else:
        train_part, val_part = dataset, validation
        x_train, y_train = x_all, y_all
        x_val, y_val = _tensors(validation, x_all.shape[2], y_all.shape[2])
    model_config = ModelConfig(x_all.shape[2], config.n_units, y_all.shape[2], config.n_layers)
    if model is None:
        model = init_model(model_config, config.seed)
    elif not isinstance(model, UnitLSTM) or model.config != model_config:
        found = model.config if isinstance(model, UnitLSTM) else type(model).__name__
        raise TrainingError(f"model is {found}, the data and config need {model_config}")
    model.to(device)
    generator = torch.Generator().manual_seed(config.seed)  # CPU: the same order everywhere
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = time.perf_counter()
    show = progress if progress is not None else stderr_is_tty()
    data = [t.to(device) for t in (x_train, y_train, x_val, y_val)]
    with torch_threads(1):
        best, history = _fit(model, optimizer, *data, config, generator, show, on_epoch, constrain)
    model.load_state_dict(best[2])
    model.to("cpu").eval()  # checkpoints and the analysis are CPU-side
    metrics = _metrics(model, train_part, val_part, x_train, x_val, y_val)
    metrics.update(_baseline_metrics(model, train_part, val_part, x_val, config.seed))
    metrics.update(best_epoch=best[1], epochs_run=len(history["val_loss"]))
    metrics["train_seconds"] = round(time.perf_counter() - start, 3)
    return TrainResult(model=model, history=history, metrics=metrics)


def init_model(config: ModelConfig, seed: int) -> UnitLSTM:
    """A freshly initialized :class:`UnitLSTM`, as :func:`train` starts from.

    Drawn on the CPU from torch seed ``seed``, so every device starts from the same weights; the
    global random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UnitLSTM(config)


def _fit(
    model, optimizer, x_train, y_train, x_val, y_val, config, generator, show, on_epoch, constrain
):
    """The epoch loop; returns ((best val loss, best epoch, best state), history)."""
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "lr": []}
    best = (math.inf, 0, _copy_state(model))
    stale = 0
    bar = tqdm(
        range(1, config.epochs + 1), desc="train", unit="epoch", disable=not show, leave=False
    )
    for epoch in bar:
        train_loss = _epoch(model, optimizer, x_train, y_train, config, generator, constrain)
        val_loss = _mse(model, x_val, y_val)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            bar.close()
            bad = train_loss if not math.isfinite(train_loss) else val_loss
            raise TrainingError(
                f"training diverged at epoch {epoch} (loss = {bad:g}); "
                f"try a smaller learning rate than {config.lr:g} (--lr)"
            )
        record = {
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": optimizer.param_groups[0]["lr"],
        }
        for key, value in record.items():
            history[key].append(value)
        if on_epoch is not None:
            on_epoch(epoch, record)
        bar.set_postfix(val=f"{val_loss:.2e}")
        if val_loss < best[0]:
            best, stale = (val_loss, epoch, _copy_state(model)), 0
        else:
            stale += 1
            if stale % max(1, config.patience // 2) == 0:
                for group in optimizer.param_groups:
                    group["lr"] *= 0.5
            if stale >= config.patience:
                break
    bar.close()
    return best, history


def _epoch(
    model: UnitLSTM,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    constrain: Callable[[UnitLSTM], None] | None = None,
) -> float:
    model.train()
    order = torch.randperm(x.shape[0], generator=generator)  # on the generator's CPU
    total, count = 0.0, 0
    for batch in order.split(config.batch_size):
        batch = batch.to(x.device)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x[batch]), y[batch])
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        if constrain is not None:
            with torch.no_grad():
                constrain(model)
        total += loss.item() * len(batch)
        count += len(batch)
    return total / count


@torch.no_grad()
def _mse(model: UnitLSTM, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return nn.functional.mse_loss(model(x), y).item()


def _part(dataset: Any, index: np.ndarray) -> Any:
    """The sequences ``index`` of a dataset (None for a bare object without ``subset``)."""
    return dataset.subset(index) if hasattr(dataset, "subset") else None


def _tensors(dataset: Any, n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A validation dataset's inputs and targets, checked against the training features."""
    x = torch.as_tensor(np.asarray(dataset.inputs), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.float32)
    if x.ndim != 3 or y.ndim != 3 or x.shape[:2] != y.shape[:2] or x.shape[0] < 1:
        raise TrainingError(
            f"validation inputs {tuple(x.shape)} and targets {tuple(y.shape)} must be "
            "(n_sequences >= 1, n_steps, features) with the same first two dimensions"
        )
    if x.shape[2] != n_in or y.shape[2] != n_out:
        raise TrainingError(
            f"validation has {x.shape[2]} inputs and {y.shape[2]} outputs, the training "
            f"data {n_in} and {n_out}"
        )
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise TrainingError("validation inputs or targets contain NaN or infinite values")
    return x, y


@torch.no_grad()
def _metrics(
    model: UnitLSTM,
    train_part: Any,
    val_part: Any,
    x_train: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
) -> dict[str, Any]:
    err = (model(x) - y).pow(2)  # (N_val, T, O)
    val_mse = err.mean().item()
    per_output = err.mean(dim=(0, 1)).tolist()
    default = [str(k) for k in range(len(per_output))]
    names = list(
        getattr(train_part, "output_names", default) if train_part is not None else default
    )
    metrics: dict[str, Any] = {
        "val_mse": val_mse,
        "val_mse_per_output": dict(zip(names, per_output, strict=True)),
        "n_train_sequences": int(x_train.shape[0]),
        "n_val_sequences": int(x.shape[0]),
    }
    if val_part is not None:
        baseline = repeat_last_mse(val_part)
        metrics["baseline_mse"] = baseline
        metrics["mse_ratio"] = val_mse / baseline if baseline > 0 else math.nan
    return metrics


@torch.no_grad()
def _baseline_metrics(model, train_part, val_part, x_val, seed) -> dict[str, Any]:
    """The network against the four baselines on the validation sequences (plain data)."""
    if train_part is None or val_part is None:
        return {}
    scores = baseline_scores(train_part, val_part, seed=seed)
    out: dict[str, Any] = ratios_to_baselines(
        model(x_val).double().cpu().numpy(), val_part.targets, scores
    )
    out["val_step_nmse"] = out.pop("step_nmse")
    out["baselines"] = {
        name: {k: scores[name][k] for k in ("order", "mse", "step_nmse")} for name in BASELINES
    }
    return out


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_task(
    spec: Any,
    config: TrainConfig | None = None,
    *,
    n_sequences: int = 512,
    progress: bool | None = None,
    device: str | torch.device = DEFAULT_DEVICE,
) -> tuple[Any, TrainResult]:
    """Generate ``n_sequences`` of a task (seeded by ``config.seed``) and train on them.

    Parameters
    ----------
    spec : TaskSpec
    config : TrainConfig, optional
    n_sequences : int, default 512
    progress : bool, optional
    device : {"cpu", "cuda", "cuda:N", "auto"} or torch.device, default "cpu"
        Where to train (see :func:`train`); the returned model is on the CPU.

    Returns
    -------
    (Dataset, TrainResult)
    """
    config = config or TrainConfig()
    dataset = generate(spec, n_sequences=n_sequences, seed=config.seed)
    return dataset, train(dataset, config, progress=progress, device=device)
