"""A training run, from its config to its run folder, in the shape of torchvision's reference `train.py`.

`run` holds `train` (what `fashionattr train` calls) and `fit` (one model, top to bottom); `loop` the training loop
(evaluation's is `fashionattr.engine`'s); `data` reads labels, split, cache and loaders; `optim` builds the
optimiser, schedule and EMA; `saver` saves and restores a run's state; `calibrate` fits its temperatures and
`applicability` its decision; `history` writes the per-epoch metrics.
"""

from fashionattr.training.run import FitResult, fit, train

__all__ = ["FitResult", "fit", "train"]
