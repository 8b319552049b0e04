"""`fashionattr train DATA`: train one model (or one per attribute) into a run directory."""

from __future__ import annotations

import argparse

from fashionattr.commands.options import DEVICE_HELP, output_folder


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_training_options(parser: argparse.ArgumentParser, model_choice: bool = True) -> None:
    """Options shared by `train` and `grid`; every default is None so a config file can supply it.

    `model_choice=False` leaves out --arch and --layout, for `grid`, which takes lists of them instead.
    """
    model = parser.add_argument_group("model")
    if model_choice:
        model.add_argument("--arch", help="resnet50, resnet152, se-resnet50, se-resnet152, vgg19_bn, dpn131, or any "
                           "timm model name (default resnet50)")  # fmt: skip
        model.add_argument("--layout", choices=["per-attribute", "multitask", "grouped"],
                           help="one model per attribute, one backbone with a head per attribute, or one backbone "
                           "per group (default multitask)")  # fmt: skip
    model.add_argument("--attributes", help="comma-separated attribute names, or 'all' (default)")
    model.add_argument("--grouping", help="grouping for --layout grouped: upper-lower (default) or design-length")
    model.add_argument("--pretrained", action="store_const", const=True, help="ImageNet weights from the timm hub")
    model.add_argument("--weights", help="backbone weights file (.pth or .safetensors), for offline use")
    model.add_argument("--img-size", type=int, help="input side in pixels (default: the architecture's, 224)")
    model.add_argument("--interpolation", choices=["bilinear", "bicubic", "lanczos", "nearest"],
                       help="resampling of the letterbox (default: the architecture's pretrained config)")  # fmt: skip
    model.add_argument("--drop-rate", type=float, help="dropout before the heads (default 0)")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, help="epochs (default 30)")
    optim.add_argument("--batch-size", type=int, help="images per step per process (default 32)")
    optim.add_argument("--optimizer", choices=["adamw", "sgd"], help="default adamw")
    optim.add_argument("--lr", type=float, help="peak learning rate of the heads (default 1e-3)")
    optim.add_argument("--backbone-lr-scale", type=float,
                       help="the backbone's share of the heads' rate, e.g. 0.1 to fine-tune pretrained weights "
                       "gently (default 1)")  # fmt: skip
    optim.add_argument("--weight-decay", type=float, help="default 0.05")
    optim.add_argument("--warmup-epochs", type=float, help="linear warm-up before the cosine decay (default 1)")
    optim.add_argument("--label-smoothing", type=float, help="default 0.1")
    optim.add_argument("--maybe-weight", type=float,
                       help="share of the target given to classes labelled 'm' (soft labels; default 0.3)")  # fmt: skip
    optim.add_argument("--clip-grad", type=float, help="gradient norm clip (default 5)")
    optim.add_argument("--ema-decay", type=float,
                       help="exponential moving average of the weights, with warm-up; 0 turns it off "
                       "(default 0.9998)")  # fmt: skip
    optim.add_argument("--early-stop", type=int, help="stop after this many epochs without improvement")
    optim.add_argument("--select-metric", choices=["mean_accuracy", "map", "loss"],
                       help="what picks the best checkpoint (default mean_accuracy)")  # fmt: skip

    augment = parser.add_argument_group("augmentation (zoom out and shift only, so no hem or sleeve end is ever cut)")
    augment.add_argument("--augment", choices=["standard", "no-flip", "none"],
                         help="preset: standard (flip, zoom 0.85-1, shift, colour jitter 0.2), no-flip, none "
                         "(default standard); the options below change single settings of it")  # fmt: skip
    augment.add_argument("--flip", type=_bool, metavar="BOOL",
                         help="mirror half the images; off for attributes that are not mirror-symmetric")  # fmt: skip
    augment.add_argument("--zoom", metavar="MIN,MAX", help="range of the zoom-out scale, e.g. 0.85,1")
    augment.add_argument("--shift", type=float, help="share (0-1) of the zoom-out margin a shift may use (default 1)")
    augment.add_argument("--color-jitter", type=float, help="brightness/contrast/saturation strength (default 0.2)")

    run = parser.add_argument_group("run")
    run.add_argument("--recipe", help="start from a named recipe (`fashionattr recipes` lists them): seed-study, "
                     "fashionai, cpu-demo; the config file and options override it")  # fmt: skip
    run.add_argument("--config", help="YAML or JSON file of settings; command-line options override it")
    run.add_argument("--split-file", help="train/val split file (default: DATA/Annotations/split.csv, else a new one)")
    run.add_argument("--val-fraction", type=float, help="for a new split (default 0.2)")
    run.add_argument("--split-seed", type=int, help="for a new split (default 0)")
    run.add_argument("--seed", type=int, help="training seed (default 0)")
    run.add_argument("--deterministic", action="store_const", const=True, help="deterministic algorithms")
    run.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], help="mixed precision (auto: bf16/fp16 on GPU)")
    run.add_argument("--channels-last", type=_bool, metavar="BOOL", help="channels-last memory format (default: GPU)")
    run.add_argument("--compile", action="store_const", const=True, help="torch.compile the model")
    run.add_argument("--workers", type=int, help="data loader processes (default 2)")
    run.add_argument("--cache", choices=["auto", "build", "off"],
                     help="preprocessed image cache: use if present (auto), build if missing, or off")  # fmt: skip
    run.add_argument("--max-bad-fraction", type=float, help="refuse to train above this share of bad images (0.01)")
    run.add_argument("--tta", action="store_const", const=True, help="validate with horizontal-flip averaging")
    run.add_argument("--device", help=DEVICE_HELP)
    run.add_argument("--max-steps-per-epoch", type=int, help="cut epochs short (quick trials)")
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
    parser.add_argument("--out", type=output_folder, help="run directory (default runs/train)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_training_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fashionattr.config import resolve_config
    from fashionattr.data.overwrite import dataset_inputs, refuse_output_over_inputs
    from fashionattr.run_dir import RunDir
    from fashionattr.training import train

    config = resolve_config(args.config, vars(args))
    refuse_output_over_inputs(
        [("--out", file) for file in RunDir(config.out).files],
        [*dataset_inputs(config.data), *([("--config", args.config)] if args.config else [])],
    )
    summaries = train(config, resume=args.resume)
    for summary in summaries:
        if summary:
            metrics = summary["best_metrics"]
            print(f"{summary['run_dir']}: best epoch {summary['best_epoch']}, val accuracy "
                  f"{100 * metrics['val_mean_accuracy']:.1f}%, mAP {100 * metrics['val_map']:.1f}%")  # fmt: skip
    return 0
