"""The datasets ffwd reads (MNIST, Fashion-MNIST, CIFAR-10, SVHN from
``data_dir`` or ``$FFWD_DATA_DIR``; the UCI digits embedded), as numpy arrays."""

from __future__ import annotations

import os
from typing import NamedTuple, Optional, Union

import numpy as np

from . import _ffwd


class Splits(NamedTuple):
    #: float32, n × channels × height × width, values byte / 255
    x_train: np.ndarray
    #: uint8 labels
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int


def load(name: str, data_dir: Optional[Union[str, "os.PathLike[str]"]] = None) -> Splits:
    """A dataset by name: "digits", "mnist", "fashion-mnist", "cifar-10", "svhn"."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a dataset name, got {type(name).__name__}")
    return Splits(*_ffwd.load_dataset(name, None if data_dir is None else os.fspath(data_dir)))
