"""The training loop's policy: Adam with gradient clipping, LR halving on plateau, early stopping with the best
weights restored. One callback decides both, so "no improvement" means the same thing for each."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import keras
import numpy as np

MIN_LEARNING_RATE = 1e-5
CLIP_NORM = 1.0


class PlateauControl(keras.callbacks.Callback):
    """An epoch improves if validation loss drops by more than `min_delta` relative to the best so far.

    After `lr_patience` epochs without improvement the learning rate halves; after `patience` training stops.
    The best epoch's weights are restored at the end either way (also when the epoch limit is reached).
    """

    def __init__(self, patience: int, lr_patience: int, min_delta: float) -> None:
        super().__init__()
        self.patience = patience
        self.lr_patience = lr_patience
        self.min_delta = min_delta
        self.best = np.inf
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.wait = 0
        self.stopped_early = False
        self.rates: list[float] = []

    def _rate(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.rates.append(self._rate())
        loss = float((logs or {})["val_loss"])
        if loss < self.best * (1 - self.min_delta):
            self.best, self.best_epoch, self.wait = loss, epoch + 1, 0
            self.best_weights = self.model.get_weights()
            return
        if loss < self.best:  # a smaller gain than min_delta: keep those weights, still count as a plateau
            self.best, self.best_epoch = loss, epoch + 1
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_early = True
            self.model.stop_training = True
        elif self.wait % self.lr_patience == 0:
            self.model.optimizer.learning_rate = max(self._rate() / 2, MIN_LEARNING_RATE)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


@dataclass(frozen=True)
class FitResult:
    history: dict[str, list[float]]  # loss, val_loss, learning_rate per epoch
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    seconds: float


def fit(
    model: keras.Model,
    loss: str,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    patience: int,
    min_delta: float,
    quiet: bool,
) -> FitResult:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=CLIP_NORM), loss=loss)
    control = PlateauControl(patience, max(1, patience // 2), min_delta)
    started = time.monotonic()
    history = model.fit(
        *train,
        validation_data=val,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0 if quiet else (1 if sys.stdout.isatty() else 2),
        callbacks=[control],
    )
    seconds = time.monotonic() - started
    logs = {k: [float(v) for v in history.history[k]] for k in ("loss", "val_loss")}
    logs["learning_rate"] = control.rates
    return FitResult(logs, control.best_epoch, control.best, control.stopped_early, seconds)
