"""Feedback training (`pcnets train-feedback`, METHOD.md section 5): data.py (images, features,
cache), recipe.py (solver, optimizer, schedule), quality.py (held-out MSE and R^2), loop.py (the
optimizer loop, best decoders, early stopping), lstsq.py + linear.py (the ridge solver for linear
decoders), checkpoint.py (stop and resume), training.py (run(cfg) -> Result through the Session)."""

from pcnets.experiments.train.checkpoint import CHECKPOINT, StopRequest, TrainingInterrupted
from pcnets.experiments.train.data import feedforward_features, in_holdout, training_data
from pcnets.experiments.train.training import COMMAND, DECODERS, run, train_feedback

__all__ = [
    "CHECKPOINT",
    "COMMAND",
    "DECODERS",
    "StopRequest",
    "TrainingInterrupted",
    "feedforward_features",
    "in_holdout",
    "run",
    "train_feedback",
    "training_data",
]
