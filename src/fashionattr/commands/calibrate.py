"""`fashionattr calibrate MODEL`: fit a run's calibration temperatures on its validation split (training does it too).

For runs trained before calibration existed, or to fit again after changing the validation split.
"""

from __future__ import annotations

import argparse

from fashionattr.commands.options import BATCH, TORCH_MODEL_HELP, WORKERS, add_data, add_device, add_model


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit one temperature per attribute on the validation split so confidences match hit rates",
        description="Fit one temperature per attribute on the run's validation split (lowest negative "
        "log-likelihood), store it in the checkpoint, write calibration.json and the reliability diagram, and add "
        "the before/after table to report.md. Training does this by itself; this command is for runs trained "
        "before calibration existed. MODEL is a run directory or a folder of per-attribute runs.",
    )
    add_model(parser, help=TORCH_MODEL_HELP)
    add_data(parser)
    parser.add_argument(
        "--batch-size", type=BATCH, default=64, metavar="N", help="images per forward pass (default 64)"
    )
    parser.add_argument("--workers", type=WORKERS, default=2, metavar="N", help="image decoding processes (default 2)")
    add_device(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fashionattr.distributed import DistributedContext, pick_device
    from fashionattr.errors import UserError
    from fashionattr.evaluation import evaluate_checkpoint
    from fashionattr.render.tables import markdown_table
    from fashionattr.report import rewrite_run_report
    from fashionattr.run_dir import find_runs
    from fashionattr.training.calibrate import calibrate_run, trained_with_flips

    runs = find_runs(args.model)
    if not runs:
        raise UserError(f"{args.model}: holds no best.pt or last.pt, here or in its sub-folders; is it a finished run?")
    context = DistributedContext(device=pick_device(args.device))
    for run_dir in runs:
        checkpoint = run_dir.checkpoint
        result = evaluate_checkpoint(checkpoint, context, data=args.data, subset="val", batch_size=args.batch_size,
                                     workers=args.workers, calibrated=False)  # fmt: skip
        averaged = None
        if trained_with_flips(checkpoint):
            averaged = evaluate_checkpoint(checkpoint, context, data=args.data, subset="val", tta=True,
                                           batch_size=args.batch_size, workers=args.workers,
                                           calibrated=False)  # fmt: skip
        calibration = calibrate_run(run_dir, checkpoint, result.schema, result.predictions,
                                    averaged.predictions if averaged is not None else None)  # fmt: skip
        if run_dir.is_finished:
            rewrite_run_report(run_dir)
        rows = [[result.schema.attribute(name).short_name, str(entry.count), f"{entry.temperature:.3f}",
                 f"{100 * entry.ece_before:.1f}", f"{100 * entry.ece_after:.1f}"]
                for name, entry in calibration.attributes.items()]  # fmt: skip
        print(f"{checkpoint}: calibrated on {sum(e.count for e in calibration.attributes.values())} validation images")
        print(markdown_table(rows, ["attribute", "val images", "temperature", "ECE % raw", "ECE % calibrated"]))
    return 0
