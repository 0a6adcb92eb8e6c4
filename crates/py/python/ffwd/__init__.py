"""ffwd: Forward-Forward training, bit-exact on every backend.

The engine is compiled Rust (``ffwd._ffwd``); this layer checks and converts
numpy arguments. A run from Python writes the same bytes as ``ffwd train``
with the same configuration and seed.

>>> import ffwd
>>> run = ffwd.train(ffwd.RunConfig())          # FF on the embedded digits
>>> run.metrics[-1]["test"]["acc"]              # doctest: +SKIP
0.89
>>> x_tr, y_tr, x_te, y_te, classes = ffwd.datasets.load("digits")
>>> (run.model.predict(x_te) == y_te).mean()    # doctest: +SKIP
0.89
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from . import _ffwd
from . import datasets
from ._ffwd import FfwdError, RunConfig, __version__

__all__ = ["FfwdError", "Model", "Run", "RunConfig", "datasets", "load", "resume", "train", "__version__"]

ConfigLike = Union[RunConfig, Dict[str, Any], str, "os.PathLike[str]"]


def _config(config: ConfigLike) -> RunConfig:
    """A RunConfig from a RunConfig, a dict, or the path of a TOML file."""
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, dict):
        return RunConfig.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        return RunConfig.from_toml(os.fspath(config))
    raise TypeError(f"config: expected a RunConfig, a dict or a TOML path, got {type(config).__name__}")


def _images(x: Any, dim: int, name: str = "x") -> np.ndarray:
    """x as a C-contiguous float32 (n, dim) array: any real dtype is
    converted; other dtypes, wrong sizes and non-finite values are errors."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected real numbers, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError(f"{name}: expected an array of images, got a scalar")
    n = a.shape[0]
    per = int(np.prod(a.shape[1:])) if a.ndim > 1 else 1
    if per != dim:
        raise ValueError(f"{name}: images of shape {a.shape[1:]} ({per} values), the model takes {dim} values per image")
    a = np.ascontiguousarray(a.reshape(n, dim), dtype=np.float32)
    if not np.isfinite(a).all():
        bad = int(np.argwhere(~np.isfinite(a))[0][0])
        raise ValueError(f"{name}: image {bad} holds a NaN or infinite value")
    return a


def _labels(y: Any, n: int, classes: int, name: str = "y") -> np.ndarray:
    """y as a uint8 array of n labels below `classes`."""
    a = np.asarray(y)
    if a.dtype.kind not in "iub":
        raise TypeError(f"{name}: expected integer labels, got dtype {a.dtype}")
    a = a.reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"{name}: {a.shape[0]} labels for {n} images")
    if n and (a.min() < 0 or a.max() >= classes):
        raise ValueError(f"{name}: labels must lie in 0..{classes - 1}, found {int(a.min())}..{int(a.max())}")
    return np.ascontiguousarray(a, dtype=np.uint8)


class Model:
    """A network of any kind (FF MLP, Trifecta, backprop baselines, FF
    contrastive twins, UFF stacks) on a backend ("cpu", "cpu-scalar",
    "cuda"), trained by batches or epochs on numpy arrays."""

    def __init__(self, config: ConfigLike, image_shape: Tuple[int, int, int], classes: int, *,
                 device: Optional[str] = None, threads: Optional[int] = None):
        cfg = _config(config)
        if device is not None or threads is not None:
            d = cfg.to_dict()
            if device is not None:
                d["train"]["device"] = device
            if threads is not None:
                d["train"]["threads"] = threads
            cfg = RunConfig.from_dict(d)
        self._m = _ffwd.Model(cfg, tuple(int(v) for v in image_shape), int(classes))

    @classmethod
    def _wrap(cls, m: "_ffwd.Model") -> "Model":
        self = cls.__new__(cls)
        self._m = m
        return self

    @property
    def _dim(self) -> int:
        c, h, w = self._m.image_shape
        return c * h * w

    def fit_batch(self, x: Any, y: Any, layers: Optional[Tuple[int, int]] = None) -> List[Dict[str, Any]]:
        """One training step on a batch; returns the statistics read back
        (every batch's on the CPU, blocks of batches on a GPU)."""
        x = _images(x, self._dim)
        return self._m.fit_batch(x, _labels(y, len(x), self.classes), layers)

    def train_epoch(self, x: Any, y: Any, batch: Optional[int] = None,
                    layers: Optional[Tuple[int, int]] = None) -> List[Dict[str, Any]]:
        """One epoch as ``ffwd train`` runs it (Philox shuffle, negative
        labels and draws by sample position); returns each batch's statistics."""
        x = _images(x, self._dim)
        return self._m.train_epoch(x, _labels(y, len(x), self.classes), batch, layers)

    def predict(self, x: Any, chunk: int = 1000, all: bool = False) -> Union[np.ndarray, Dict[str, Any]]:
        """Predicted labels (uint8); with ``all=True`` every method's."""
        return self._m.predict(_images(x, self._dim), chunk, all)

    def goodness(self, x: Any, labels: Any) -> List[np.ndarray]:
        """Each layer's (or block's) goodness, the sum of squared
        activities, of every image with its label written in (-1: the
        neutral label, FF MLPs only): one float32 array per layer (the FF
        MLP and the conv FF net)."""
        x = _images(x, self._dim)
        a = np.asarray(labels)
        if a.dtype.kind not in "iub":
            raise TypeError(f"labels: expected integer labels, got dtype {a.dtype}")
        a = a.reshape(-1)
        if a.shape[0] != len(x):
            raise ValueError(f"labels: {a.shape[0]} labels for {len(x)} images")
        if len(a) and (a.min() < -1 or a.max() >= self.classes):
            raise ValueError(f"labels: labels must lie in 0..{self.classes - 1} (or -1 for neutral)")
        return self._m.goodness(x, [None if v < 0 else int(v) for v in a])

    def features(self, x: Any, form: str = "standard", label: Optional[int] = None) -> np.ndarray:
        """What a linear probe reads: n × (sum of the layer widths)."""
        return self._m.features(_images(x, self._dim), form, label)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Every parameter and running statistic, by checkpoint name."""
        return self._m.state_dict()

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write a checkpoint in the ``ffwd train`` format (safetensors)."""
        self._m.save(os.fspath(path))

    kind = property(lambda self: self._m.kind, doc="What kind of network this is.")
    backend = property(lambda self: self._m.backend, doc="The backend it runs on.")
    depth = property(lambda self: self._m.depth, doc="Layers, blocks or cells.")
    classes = property(lambda self: self._m.classes, doc="Number of classes.")
    image_shape = property(lambda self: self._m.image_shape, doc="(channels, height, width)")
    epoch = property(lambda self: self._m.epoch, doc="Epochs completed.")
    config = property(lambda self: self._m.config, doc="The run configuration.")

    def __repr__(self) -> str:
        return repr(self._m)


def load(path: Union[str, "os.PathLike[str]"], device: str = "cpu", threads: int = 0) -> Model:
    """A model from a checkpoint written by ``Model.save`` or ``ffwd train``."""
    return Model._wrap(_ffwd.Model.load(os.fspath(path), device, threads))


@dataclass
class Run:
    """A finished ``train`` run."""

    #: one dict per epoch, as in ``metrics.jsonl``
    metrics: List[Dict[str, Any]]
    model: Model
    #: the run folder (metrics.jsonl, model.safetensors, probe.json)
    out_dir: str
    #: the linear probe's report, when the config has a ``[probe]`` table
    probe: Optional[Dict[str, Any]]


def train(config: ConfigLike, progress: Union[bool, Callable[[Dict[str, Any]], Any], None] = None,
          data_dir: Optional[Union[str, "os.PathLike[str]"]] = None) -> Run:
    """Run ``ffwd train`` on a configuration (a RunConfig, a dict with the
    TOML structure, or a TOML path). ``progress``: True for the command
    line's progress bar, or a callable given each epoch's metrics dict."""
    cfg = _config(config)
    return _run(_ffwd.train(cfg, _progress(progress), None if data_dir is None else os.fspath(data_dir)))


def resume(run_dir: Union[str, "os.PathLike[str]"], threads: Optional[int] = None, device: Optional[str] = None,
           progress: Union[bool, Callable[[Dict[str, Any]], Any], None] = None,
           data_dir: Optional[Union[str, "os.PathLike[str]"]] = None) -> Run:
    """Continue an interrupted run (Ctrl-C, SIGTERM, a crash after a saved
    training state) from ``run_dir/train-state.safetensors``, as
    ``ffwd train --resume`` does: it ends with the bits the run would have
    had uninterrupted. ``Run.metrics`` holds the epochs this call trained;
    ``metrics.jsonl`` in the folder holds them all."""
    out = _ffwd.resume(os.fspath(run_dir), threads, device, _progress(progress),
                       None if data_dir is None else os.fspath(data_dir))
    return _run(out)


def _progress(progress: Union[bool, Callable[[Dict[str, Any]], Any], None]) -> Any:
    if callable(progress):
        return lambda line: progress(json.loads(line))
    return True if progress else None


def _run(out: Tuple[List[str], Any, str, Optional[str]]) -> Run:
    lines, model, out_dir, probe = out
    return Run([json.loads(l) for l in lines], Model._wrap(model), out_dir, None if probe is None else json.loads(probe))
