"""A training run, from its config to its run folder, in the shape of torchvision's reference `train.py`.

`run` holds `train` (what `fashionattr train` calls) and `fit` (one model, top to bottom); `data` reads labels,
split, cache and loaders; `optim` builds the optimiser, schedule and EMA; `checkpoints` saves and restores a
run's state; `history` writes the per-epoch metrics. The loops themselves are `fashionattr.engine`'s.
"""

from fashionattr.training.run import FitResult, fit, train

__all__ = ["FitResult", "fit", "train"]
