"""The ``model.pt`` format: save, safe load, and import of foreign state_dicts.

A checkpoint is ``torch.save`` of a plain dict, loadable with ``torch.load(weights_only=True)``::

    {"format": "unitprobe", "version": 1,
     "config": {"n_inputs": 2, "n_units": 8, "n_outputs": 2, "n_layers": 1},
     "task": {... TaskSpec.to_dict() ...},
     "state_dict": {"lstm.weight_ih_l0": ..., ..., "readout.bias": ...},
     "history": {"train_loss": [...], "val_loss": [...], ...},
     "metrics": {"val_mse": ..., "baseline_mse": ..., ...},
     "train_config": {...},
     "norm": {"K": [shift, scale], ...}}      # optional: z = (x - shift) / scale per series

``norm`` is the normalization of the training data; data generated or read to analyze the
model reuse it (:attr:`Checkpoint.norm`). Files written before it existed lack it; their
data are normalized with their own statistics, as before.

:func:`load` also accepts a foreign checkpoint holding one ``nn.LSTM`` (PyTorch gate order i,
f, g, o) and one linear readout, given together with the task it was trained on: a plain
state_dict with the keys ``lstm.weight_ih_l{k}``, ..., ``readout.weight``, ``readout.bias``,
or any layout :mod:`unitprobe.model.layouts` recognizes (nested under ``state_dict`` or
``model_state_dict``, any key prefixes). A whole pickled module is refused unless
``unsafe=True``: unpickling can run arbitrary code.

Reading is bounded before anything is allocated: only regular files are read (a FIFO or a
device such as ``/dev/zero`` is refused), files above :data:`MAX_FILE_BYTES` are refused, and
a zip archive whose members claim more than :data:`MAX_TENSOR_BYTES` uncompressed is refused
before ``torch.load`` inflates it.
"""

from __future__ import annotations

import math
import os
import pickle
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unitprobe._utils import commit_file, relax_mode
from unitprobe.errors import CheckpointError, UnitprobeError
from unitprobe.model.layouts import canonical_state
from unitprobe.model.lstm import ModelConfig, UnitLSTM
from unitprobe.tasks import TaskSpec, get_preset
from unitprobe.validation import is_int

__all__ = [
    "FORMAT",
    "VERSION",
    "Checkpoint",
    "save",
    "save_trained",
    "load",
    "config_from_state_dict",
    "MAX_FILE_BYTES",
    "MAX_TENSOR_BYTES",
    "check_norm",
    "n_parameters",
    "MAX_PARAMETERS",
]

#: Largest checkpoint file read (bytes).
MAX_FILE_BYTES = 2**30
#: Largest total uncompressed size of a checkpoint's members (bytes), checked before loading.
MAX_TENSOR_BYTES = 2**31
#: Deepest nesting of lists and dicts in a checkpoint's plain-data entries.
MAX_DEPTH = 32

FORMAT = "unitprobe"
VERSION = 1
_UNSAFE_HINT = "pass --unsafe-load (unsafe=True) only if you trust where the file came from"


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    model : UnitLSTM
        In eval mode.
    task : TaskSpec or None
        The task the model was trained on (None for a foreign state_dict loaded without a task).
    source : {"unitprobe", "state_dict", "module"}
        What the file held.
    norm : dict of str to (shift, scale) or None
        How the model's inputs were scaled: ``z = (x - shift) / scale`` per series (None:
        unknown, e.g. a foreign state_dict or a checkpoint written before it was stored).
    """

    model: UnitLSTM
    task: Any
    path: Path
    source: str
    history: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    norm: dict[str, tuple[float, float]] | None = None

    @property
    def config(self) -> ModelConfig:
        """The model's architecture."""
        return self.model.config

    @classmethod
    def from_modules(
        cls,
        lstm: nn.Module,
        readout: nn.Module | tuple[Tensor, Tensor | None],
        task: Any,
        *,
        norm: dict[str, tuple[float, float]] | None = None,
    ) -> Checkpoint:
        """A network held in Python, analyzed without a file: checked and copied as
        :func:`load` checks a foreign checkpoint.

        Parameters
        ----------
        lstm : nn.LSTM
            Unidirectional, ``proj_size=0``; any number of layers, with or without biases.
        readout : nn.Linear or (weight, bias)
            The linear layer from the last LSTM layer's units to the outputs; ``weight`` of
            shape (n_outputs, n_units), ``bias`` of shape (n_outputs,) or None.
        task : TaskSpec or str
            The task the network was trained on (or a preset's name).
        norm : dict of str to (shift, scale), optional
            How its inputs were scaled in training, ``z = (x - shift) / scale`` per series;
            without it the analyzed data are standardized on themselves.
        """
        where = Path(f"<{type(lstm).__name__} in memory>")
        if not isinstance(lstm, nn.LSTM):
            raise CheckpointError(f"lstm is a {type(lstm).__name__}, expected an nn.LSTM")
        if isinstance(readout, nn.Linear):
            head = dict(readout.state_dict())
        elif isinstance(readout, tuple) and len(readout) == 2:
            head = {"weight": readout[0]} | ({} if readout[1] is None else {"bias": readout[1]})
        else:
            raise CheckpointError(
                f"readout is a {type(readout).__name__}, expected an nn.Linear or (weight, bias)"
            )
        parts = {f"lstm.{k}": v for k, v in lstm.state_dict().items()}
        parts |= {f"readout.{k}": torch.as_tensor(v, device="cpu") for k, v in head.items()}
        parts = {k: v.detach().to("cpu", copy=True) for k, v in parts.items()}
        state, _ = canonical_state(parts, str(where))
        _check_dense(state, where)
        model = _build(where, config_from_state_dict(state, where), state)
        task = get_preset(task) if isinstance(task, str) else task
        _check_task(where, model.config, task)
        norm = check_norm(norm) if norm is not None else None
        return cls(model=model, task=task, path=where, source="module", norm=norm)

    @classmethod
    def from_training(
        cls,
        result: Any,
        task: Any,
        path: str | os.PathLike,
        train_config: Any = None,
        norm: dict[str, tuple[float, float]] | None = None,
    ) -> Checkpoint:
        """The checkpoint of a :class:`~unitprobe.model.train.TrainResult`, in memory.

        What :func:`load` would return for the file :func:`save_trained` writes, without the
        round trip through the disk.
        """
        return cls(
            model=result.model.eval(),
            task=task,
            path=Path(path),
            source="unitprobe",
            history=result.history,
            metrics=result.metrics,
            train_config=train_config.to_dict() if train_config is not None else {},
            norm=check_norm(norm) if norm is not None else None,
        )


def save(
    path: str | os.PathLike,
    model: UnitLSTM,
    task: Any,
    *,
    history: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    norm: dict[str, tuple[float, float]] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``model`` and its task to ``path`` atomically (temp file + rename).

    Parameters
    ----------
    path : path-like
        Destination ``.pt`` file; its directory must exist.
    model : UnitLSTM
    task : TaskSpec or dict
        Stored as plain data (``TaskSpec.to_dict()``).
    history, metrics, train_config : dict, optional
        Plain data only (numbers, strings, lists, dicts).
    norm : dict of str to (shift, scale), optional
        The training data's normalization (``Dataset.norm``).
    overwrite : bool, default True
        Replace an existing ``path``; without it, a file that appeared meanwhile (another
        process) is not replaced and a :class:`CheckpointError`-family error is raised.

    Returns
    -------
    Path
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise CheckpointError(f"cannot write {path}: directory {path.parent} does not exist")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "task": task.to_dict() if hasattr(task, "to_dict") else task,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "history": history or {},
        "metrics": metrics or {},
        "train_config": train_config or {},
    }
    if norm is not None:
        payload["norm"] = {k: [float(a), float(b)] for k, (a, b) in check_norm(norm).items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        relax_mode(Path(tmp))
        commit_file(Path(tmp), path, overwrite)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_trained(
    path: str | os.PathLike,
    result: Any,
    task: Any,
    train_config: Any,
    *,
    norm: dict[str, tuple[float, float]] | None = None,
    overwrite: bool = True,
) -> Path:
    """:func:`save` a :class:`~unitprobe.model.train.TrainResult` with its history and metrics.

    Parameters
    ----------
    path : path-like
    result : TrainResult
        Its ``model``, ``history`` and ``metrics`` are stored.
    task : TaskSpec
    train_config : TrainConfig
        Stored as plain data (``to_dict()``).
    norm : dict of str to (shift, scale), optional
        The training data's normalization (``dataset.norm``), reused on new data.
    overwrite : bool, default True
        See :func:`save`.
    """
    return save(
        path,
        result.model,
        task,
        history=result.history,
        metrics=result.metrics,
        train_config=train_config.to_dict(),
        norm=norm,
        overwrite=overwrite,
    )


def load(
    path: str | os.PathLike,
    *,
    task: Any = None,
    unsafe: bool = False,
    lstm: str | None = None,
    readout: str | None = None,
) -> Checkpoint:
    """Load a unitprobe checkpoint or a foreign checkpoint safely.

    Parameters
    ----------
    path : path-like
    task : TaskSpec, optional
        Required for a foreign checkpoint; for a unitprobe checkpoint it replaces the stored
        task (its input and output counts must match the model).
    unsafe : bool, default False
        Allow full unpickling (a saved ``nn.Module``). Unpickling runs code from the file.
    lstm, readout : str, optional
        Key prefixes of a foreign checkpoint's LSTM and linear readout, where more than one
        reading fits (:func:`unitprobe.model.layouts.find_layout`).

    Returns
    -------
    Checkpoint

    Raises
    ------
    CheckpointError
        Missing, empty, truncated or non-torch file; unknown format version; missing keys;
        shape mismatches; non-finite, non-float, sparse or meta-tensor weights; a stored config
        that does not match the weights; history, metrics or train_config that are not plain
        data; a pickled module without ``unsafe``; a task that does not fit the model.
    """
    path = Path(path)
    obj = _read(path, unsafe=unsafe)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
        source = "module"
    elif isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _from_payload(path, obj, task)
    else:
        source = "state_dict"
    state, _ = canonical_state(obj, str(path), lstm=lstm, readout=readout)
    if task is None:
        raise CheckpointError(
            f"{path} is a plain state_dict with no task; pass --task NAME or --task-file FILE"
        )
    _check_dense(state, path)
    model = _build(path, config_from_state_dict(state, path), state)
    _check_task(path, model.config, task)
    return Checkpoint(model=model, task=task, path=path, source=source)


def config_from_state_dict(state: dict[str, Any], path: str | os.PathLike = "") -> ModelConfig:
    """Infer the :class:`ModelConfig` of a state_dict from its tensor shapes.

    Parameters
    ----------
    state : dict of str to Tensor
        ``lstm.weight_ih_l0`` has shape (4 * n_units, n_inputs); ``readout.weight`` has shape
        (n_outputs, n_units).
    """
    missing = [
        k for k in ("lstm.weight_ih_l0", "lstm.weight_hh_l0", "readout.weight") if k not in state
    ]
    if missing:
        raise CheckpointError(f"{path}: state_dict is missing keys: {', '.join(missing)}")
    w_ih, w_out = state["lstm.weight_ih_l0"], state["readout.weight"]
    for key, value in (("lstm.weight_ih_l0", w_ih), ("readout.weight", w_out)):
        if not isinstance(value, Tensor) or value.ndim != 2:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise CheckpointError(f"{path}: {key} must be a 2-D tensor, found {shape}")
    n_layers = 1
    while f"lstm.weight_ih_l{n_layers}" in state:
        n_layers += 1
    four_h, n_inputs = w_ih.shape
    if four_h % 4 or four_h == 0:
        raise CheckpointError(
            f"{path}: lstm.weight_ih_l0 has shape {tuple(w_ih.shape)}; its first dimension "
            "must be 4 * n_units (gates i, f, g, o)"
        )
    try:
        return ModelConfig(n_inputs, four_h // 4, w_out.shape[0], n_layers)
    except UnitprobeError as err:
        raise CheckpointError(f"{path}: {err}") from None


def _read(path: Path, *, unsafe: bool) -> Any:
    """``torch.load`` with every failure turned into one clear CheckpointError."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise CheckpointError(f"checkpoint {path} is a symlink to a missing file") from None
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as err:  # ELOOP: a symlink loop; EACCES on a folder above
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CheckpointError(f"checkpoint {path} is a directory, expected a .pt file")
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(
            f"checkpoint {path} is not a regular file (a pipe, socket or device); "
            "save the checkpoint to a file first"
        )
    if info.st_size > MAX_FILE_BYTES:
        raise CheckpointError(
            f"checkpoint {path} has {info.st_size:.3g} bytes, more than the "
            f"{MAX_FILE_BYTES:.3g} a unitprobe model can need"
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror}") from None
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    is_zip = head == b"PK\x03\x04"
    if is_zip and not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt (incomplete zip archive)")
    if not is_zip and head[:1] != b"\x80":
        raise CheckpointError(f"{path} is not a torch file (torch.save writes a zip archive)")
    if is_zip:
        _check_zip_size(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe)
    except pickle.UnpicklingError as err:
        if not unsafe and "weights_only" in str(err).lower().replace(" ", "_"):
            raise CheckpointError(
                f"{path} contains pickled Python objects (such as a whole nn.Module), which "
                f"can run code when loaded; {_UNSAFE_HINT}"
            ) from None
        raise CheckpointError(f"{path} is not a readable torch file ({_first_line(err)})") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({_first_line(err)})"
        ) from None
    except Exception as err:  # arbitrary code ran (unsafe) or an unknown class was referenced
        raise CheckpointError(
            f"cannot load {path}: {type(err).__name__}: {_first_line(err)}"
        ) from None


def _check_zip_size(path: Path) -> None:
    """Refuse an archive whose members claim more than :data:`MAX_TENSOR_BYTES` unpacked."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({_first_line(err)})"
        ) from None
    if total > MAX_TENSOR_BYTES:
        raise CheckpointError(
            f"checkpoint {path} unpacks to {total:.3g} bytes, more than the "
            f"{MAX_TENSOR_BYTES:.3g} a unitprobe model can need; refusing to load it"
        )


def check_norm(norm: Any, where: str = "norm") -> dict[str, tuple[float, float]]:
    """A normalization map ``{series: (shift, scale)}`` with finite shifts and scales > 0.

    Raises
    ------
    CheckpointError
        Not a dict of series names to two finite numbers with a positive scale.
    """
    if not isinstance(norm, dict) or not norm:
        raise CheckpointError(f"{where} must map series names to (shift, scale)")
    out = {}
    for key, value in norm.items():
        pair = value if isinstance(value, (list, tuple)) else None
        ok = pair is not None and len(pair) == 2
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
        if not ok or not all(math.isfinite(float(v)) for v in pair) or not float(pair[1]) > 0:
            raise CheckpointError(
                f"{where}['{str(key)[:40]}'] == {str(value)[:60]}, must be [shift, scale] "
                "with finite numbers and scale > 0"
            )
        out[str(key)] = (float(pair[0]), float(pair[1]))
    return out


def _depth(value: Any, limit: int) -> bool:
    """Whether ``value``'s lists and dicts nest at most ``limit`` deep (iteratively)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, (list, tuple)):
            if depth >= limit:
                return False
            stack += [(v, depth + 1) for v in item]
    return True


def _check_dense(state: Any, path: Path) -> None:
    """Every tensor of ``state`` holds values in memory (not sparse, not a meta tensor)."""
    if not isinstance(state, dict):
        return
    for key, value in state.items():
        if not isinstance(value, Tensor):
            continue
        if value.layout != torch.strided:
            raise CheckpointError(
                f"{path}: {key} is a {value.layout} tensor; save dense tensors (tensor.to_dense())"
            )
        if value.device.type == "meta":
            raise CheckpointError(f"{path}: {key} is a meta tensor: it has a shape but no values")


def _from_payload(path: Path, payload: dict[str, Any], task: Any) -> Checkpoint:
    version = payload.get("version")
    if not is_int(version):
        raise CheckpointError(f"{path} has an invalid checkpoint version {version!r}")
    if version != VERSION:
        raise CheckpointError(
            f"{path} has unitprobe checkpoint version {version!r}; this unitprobe reads version "
            f"{VERSION} (upgrade unitprobe to read newer files)"
        )
    missing = [k for k in ("config", "task", "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"{path} is missing checkpoint entries: {', '.join(missing)}")
    for key in ("config", "task", *_EXTRAS, "norm"):
        if not _depth(payload.get(key), MAX_DEPTH):
            raise CheckpointError(
                f"{path}: '{key}' nests lists or dicts more than {MAX_DEPTH} deep; "
                "checkpoint entries hold plain, shallow data"
            )
    try:
        config = ModelConfig(**payload["config"])
    except (TypeError, UnitprobeError) as err:
        raise CheckpointError(
            f"{path}: invalid model config {payload['config']!r} ({err})"
        ) from None
    state = payload["state_dict"]
    _check_dense(state, path)
    if isinstance(state, dict) and "lstm.weight_ih_l0" in state:
        # the weights, not the config, say how large the model is: check before building it
        found = config_from_state_dict(state, path)
        if found != config:
            raise CheckpointError(
                f"{path}: the stored config {config.to_dict()} does not match the weights, "
                f"which are those of {found.to_dict()}"
            )
    model = _build(path, config, state)
    extras = {key: _plain(payload.get(key), key, path) for key in _EXTRAS}
    norm = payload.get("norm")
    if norm is not None:
        try:
            norm = check_norm(norm, "norm")
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None
    if task is None:
        try:
            task = TaskSpec.from_dict(payload["task"])
        except UnitprobeError as err:
            raise CheckpointError(f"{path}: stored task is invalid: {err}") from None
    _check_task(path, config, task)
    return Checkpoint(
        model=model,
        task=task,
        path=path,
        source="unitprobe",
        norm=norm,
        **extras,
    )


_EXTRAS = ("history", "metrics", "train_config")


def _plain(value: Any, key: str, path: Path) -> dict[str, Any]:
    """A checkpoint's ``history``/``metrics``/``train_config`` as plain data (tensors as lists)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: '{key}' is a {type(value).__name__}, expected a dict")

    def convert(item: Any, where: str) -> Any:
        if isinstance(item, Tensor):
            dense = item.layout == torch.strided and item.device.type != "meta"
            return item.detach().cpu().tolist() if dense else None
        if isinstance(item, dict):
            return {str(k): convert(v, f"{where}.{k}") for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [convert(v, f"{where}[{i}]") for i, v in enumerate(item)]
        if item is None or isinstance(item, (str, int, float, bool)):
            return item
        raise CheckpointError(
            f"{path}: {where} is a {type(item).__name__}; checkpoint entries hold plain data"
        )

    return convert(value, key)


def _build(path: Path, config: ModelConfig, state: Any) -> UnitLSTM:
    """Instantiate the model and load ``state`` after checking keys, shapes, dtypes, values."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: state_dict is a {type(state).__name__}, expected a dict")
    _check_size(path, config)
    for key, value in state.items():
        if isinstance(value, Tensor) and value.is_floating_point() and value.dtype not in _FLOATS:
            raise CheckpointError(
                f"{path}: {key} has dtype {value.dtype}, a float type unitprobe does not read; "
                "save float32 weights (tensor.float())"
            )
    model = UnitLSTM(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(f"{path}: state_dict is missing keys: {', '.join(missing)}")
    extra = [str(k) for k in state if k not in expected]
    if extra:
        raise CheckpointError(f"{path}: state_dict has unexpected keys: {', '.join(extra)}")
    for key, want in expected.items():
        got = state[key]
        if not isinstance(got, Tensor):
            raise CheckpointError(f"{path}: {key} is a {type(got).__name__}, expected a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(got.shape)}, expected {tuple(want.shape)} "
                f"for {config.n_inputs} inputs, {config.n_units} units, {config.n_outputs} outputs"
            )
        if not got.is_floating_point():
            raise CheckpointError(f"{path}: {key} has dtype {got.dtype}, expected a float tensor")
        if not torch.isfinite(got).all():
            bad = int((~torch.isfinite(got)).sum())
            raise CheckpointError(f"{path}: {key} has {bad} NaN or infinite value(s)")
    model.load_state_dict({k: state[k].float() for k in expected})
    return model.eval()


_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: Most parameters of a model :func:`load` builds (2**28 float32 values = 1 GiB).
MAX_PARAMETERS = 2**28


def n_parameters(config: ModelConfig) -> int:
    """Parameters of a :class:`UnitLSTM` of ``config`` (LSTM layers and readout)."""
    h, n_in = int(config.n_units), int(config.n_inputs)
    lstm = sum(4 * h * ((n_in if k == 0 else h) + h + 2) for k in range(int(config.n_layers)))
    return lstm + int(config.n_outputs) * (h + 1)


def _check_size(path: Path, config: ModelConfig) -> None:
    count = n_parameters(config)
    if count > MAX_PARAMETERS:
        raise CheckpointError(
            f"{path}: a model of {config.to_dict()} has {count:.3g} parameters, more than "
            f"{MAX_PARAMETERS:.3g}; refusing to build it"
        )


def _check_task(path: Path, config: ModelConfig, task: Any) -> None:
    n_in, n_out = len(task.inputs), len(task.predict)
    if n_in != config.n_inputs:
        raise CheckpointError(
            f"task '{task.name}' has {n_in} input(s) ({', '.join(task.inputs)}), but the model "
            f"in {path} expects {config.n_inputs}"
        )
    if n_out != config.n_outputs:
        raise CheckpointError(
            f"task '{task.name}' predicts {n_out} series ({', '.join(task.predict)}), but the "
            f"model in {path} has {config.n_outputs} output(s)"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
