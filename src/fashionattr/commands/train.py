"""`fashionattr train DATA`: train one model (or one per attribute) into a run directory."""

from __future__ import annotations

import argparse

from fashionattr.applicability import METHODS as APPLICABILITY_METHODS
from fashionattr.commands.options import (
    AUGMENT_CHOICES,
    DEVICE_HELP,
    INTERPOLATION_CHOICES,
    LAYOUT_CHOICES,
    add_out,
    add_tta,
    default_of,
    parse_bool,
    setting,
)
from fashionattr.config import AMP_MODES, CACHE_MODES, OPTIMIZERS, SELECT_METRICS


def _default(name: str, unit: str = "") -> str:
    """`(default X)` from `TrainConfig`, so that the help never disagrees with what runs."""
    value = default_of(name)
    shown = "none" if value is None else ",".join(map(str, value)) if isinstance(value, list) else f"{value:g}" if (
        isinstance(value, float)) else str(value)  # fmt: skip
    return f"(default {shown}{unit})"


def add_training_options(parser: argparse.ArgumentParser, model_choice: bool = True) -> None:
    """Options shared by `train` and `grid`; every default is None so a config file can supply it.

    Each number is parsed as its `TrainConfig` field and range-checked by `config.validate` (`setting`), each choice
    list is the domain's own constant, and each default shown is `TrainConfig`'s. `model_choice=False` leaves out
    --arch and --layout, for `grid`, which takes lists of them instead.
    """
    model = parser.add_argument_group("model")
    if model_choice:
        model.add_argument("--arch", help="resnet50, resnet152, se-resnet50, se-resnet152, vgg19_bn, dpn131, or any "
                           f"timm model name {_default('arch')}")  # fmt: skip
        model.add_argument("--layout", choices=LAYOUT_CHOICES,
                           help="one model per attribute, one backbone with a head per attribute, or one backbone "
                           f"per group {_default('layout')}")  # fmt: skip
    model.add_argument("--attributes", help="comma-separated attribute names (short names work), or 'all' (default)")
    model.add_argument("--grouping", help=f"grouping for --layout grouped: upper-lower or design-length "
                       f"{_default('grouping')}")  # fmt: skip
    model.add_argument("--pretrained", action="store_const", const=True, help="ImageNet weights from the timm hub")
    model.add_argument("--weights", help="backbone weights file (.pth or .safetensors), for offline use")
    model.add_argument("--img-size", type=setting("img_size"), metavar="PX",
                       help="input side in pixels (default: the architecture's pretrained config)")  # fmt: skip
    model.add_argument("--interpolation", choices=INTERPOLATION_CHOICES,
                       help="resampling of the letterbox (default: the architecture's pretrained config)")  # fmt: skip
    model.add_argument("--drop-rate", type=setting("drop_rate"), metavar="P",
                       help=f"dropout before the heads {_default('drop_rate')}")  # fmt: skip

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=setting("epochs"), metavar="N", help=f"epochs {_default('epochs')}")
    optim.add_argument("--batch-size", type=setting("batch_size"), metavar="N",
                       help=f"images per step per process {_default('batch_size')}")  # fmt: skip
    optim.add_argument("--optimizer", choices=OPTIMIZERS, help=f"the optimiser {_default('optimizer')}")
    optim.add_argument("--lr", type=setting("lr"), metavar="LR",
                       help=f"peak learning rate of the heads {_default('lr')}")  # fmt: skip
    optim.add_argument("--backbone-lr-scale", type=setting("backbone_lr_scale"), metavar="S",
                       help="the backbone's share of the heads' rate, e.g. 0.1 to fine-tune pretrained weights "
                       f"gently {_default('backbone_lr_scale')}")  # fmt: skip
    optim.add_argument("--weight-decay", type=setting("weight_decay"), metavar="W",
                       help=f"decoupled weight decay {_default('weight_decay')}")  # fmt: skip
    optim.add_argument("--warmup-epochs", type=setting("warmup_epochs"), metavar="N",
                       help=f"linear warm-up before the cosine decay {_default('warmup_epochs')}")  # fmt: skip
    optim.add_argument("--label-smoothing", type=setting("label_smoothing"), metavar="E",
                       help=f"share of the target spread over all classes {_default('label_smoothing')}")  # fmt: skip
    optim.add_argument(
        "--maybe-weight",
        type=setting("maybe_weight"),
        metavar="W",
        help=f"share of the target given to classes labelled 'm' {_default('maybe_weight')}",
    )
    optim.add_argument("--clip-grad", type=setting("clip_grad"), metavar="NORM",
                       help=f"gradient norm clip {_default('clip_grad')}")  # fmt: skip
    optim.add_argument("--ema-decay", type=setting("ema_decay"), metavar="D",
                       help="exponential moving average of the weights, with warm-up; 0 turns it off "
                       f"{_default('ema_decay')}")  # fmt: skip
    optim.add_argument("--early-stop", type=setting("early_stop"), metavar="N",
                       help="stop after this many epochs without improvement (default: never)")  # fmt: skip
    optim.add_argument("--select-metric", choices=SELECT_METRICS,
                       help=f"what picks the best checkpoint {_default('select_metric')}")  # fmt: skip

    augment = parser.add_argument_group("augmentation (zoom out and shift only, so no hem or sleeve end is ever cut)")
    augment.add_argument("--augment", choices=AUGMENT_CHOICES,
                         help="preset: standard (flip, zoom 0.85-1, shift, colour jitter 0.2), no-flip, none "
                         f"{_default('augment')}; the options below change single settings of it")  # fmt: skip
    augment.add_argument("--flip", type=parse_bool, metavar="BOOL",
                         help="mirror half the images; off for attributes that are not mirror-symmetric")  # fmt: skip
    augment.add_argument("--zoom", metavar="MIN,MAX", help="range of the zoom-out scale, e.g. 0.85,1")
    augment.add_argument("--shift", type=setting("shift"), metavar="F",
                         help="share (0-1) of the zoom-out margin a shift may use (default: the preset's)")  # fmt: skip
    augment.add_argument("--color-jitter", type=setting("color_jitter"), metavar="F",
                         help="brightness/contrast/saturation strength (default: the preset's)")  # fmt: skip

    run = parser.add_argument_group("run")
    run.add_argument("--recipe", help="start from a named recipe (`fashionattr recipes` lists them); the config file "
                     "and options override it")  # fmt: skip
    run.add_argument("--config", help="YAML or JSON file of settings; command-line options override it")
    run.add_argument("--split-file", help="train/val split file (default: DATA/Annotations/split.csv, else a new one)")
    run.add_argument("--val-fraction", type=setting("val_fraction"), metavar="F",
                     help=f"for a new split {_default('val_fraction')}")  # fmt: skip
    run.add_argument("--split-seed", type=setting("split_seed"), metavar="S",
                     help=f"for a new split {_default('split_seed')}")  # fmt: skip
    run.add_argument("--seed", type=setting("seed"), metavar="S", help=f"training seed {_default('seed')}")
    run.add_argument("--deterministic", action="store_const", const=True, help="deterministic algorithms")
    run.add_argument("--amp", choices=AMP_MODES, help=f"mixed precision, auto: bf16/fp16 on GPU {_default('amp')}")
    run.add_argument("--channels-last", type=parse_bool, metavar="BOOL", help="channels-last memory format (default: "
                     "on a GPU)")  # fmt: skip
    run.add_argument("--compile", action="store_const", const=True, help="torch.compile the model")
    run.add_argument("--workers", type=setting("workers"), metavar="N",
                     help=f"data loader processes {_default('workers')}")  # fmt: skip
    run.add_argument("--cache", choices=CACHE_MODES,
                     help="preprocessed image cache: use if present (auto), build if missing, or off "
                     f"{_default('cache')}")  # fmt: skip
    run.add_argument("--max-bad-fraction", type=setting("max_bad_fraction"), metavar="F",
                     help=f"refuse to train above this share of bad images {_default('max_bad_fraction')}")  # fmt: skip
    add_tta(run, help="validate with horizontal-flip averaging")
    run.set_defaults(tta=None)  # None: not given, so a config file's `tta` holds
    run.add_argument("--applicability", choices=[*APPLICABILITY_METHODS, "none"],
                     help="how answers decide which attributes a photo shows: head (the network's own, trained with "
                     "it; the probe where the layout has none), probe, mahalanobis or invisible; see "
                     f"docs/applicability.md {_default('applicability')}")  # fmt: skip
    run.add_argument("--applicability-weight", type=setting("applicability_weight"), metavar="W",
                     help="share of the applicability head's loss in training, 0 for no head "
                     f"{_default('applicability_weight')}")  # fmt: skip
    run.add_argument("--device", help=DEVICE_HELP)
    run.add_argument("--max-steps-per-epoch", type=setting("max_steps_per_epoch"), metavar="N",
                     help="cut epochs short, for quick trials (default: whole epochs)")  # fmt: skip
    run.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model into a run directory",
        description="Train on a FashionAI-layout dataset. The run directory gets the resolved config, the schema, "
        "metrics per epoch (CSV, JSON, TensorBoard), best.pt and last.pt, and a report with plots. Several GPUs: "
        "torchrun --nproc_per_node N -m fashionattr train ...",
    )
    parser.add_argument("data", nargs="?", help="dataset root (or give `data:` in --config)")
    add_out(parser, folder=True, help=f"run directory {_default('out')}")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_training_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fashionattr.config import resolve_config
    from fashionattr.training import train

    config = resolve_config(args.config, vars(args))
    summaries = train(config, resume=args.resume)
    for summary in summaries:
        if summary:
            metrics = summary["best_metrics"]
            print(f"{summary['run_dir']}: best epoch {summary['best_epoch']}, val accuracy "
                  f"{100 * metrics['val_mean_accuracy']:.1f}%, mAP {100 * metrics['val_map']:.1f}%")  # fmt: skip
    return 0
