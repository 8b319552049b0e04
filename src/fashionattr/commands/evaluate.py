"""`fashionattr evaluate`: score a run on its validation split or a labelled test set, or score an answer file."""

from __future__ import annotations

import argparse
from pathlib import Path

from fashionattr.commands.options import (
    BATCH,
    MODEL_HELP,
    WORKERS,
    add_applicability_threshold,
    add_data,
    add_device,
    add_no_calibration,
    add_out,
    add_tta,
    output_file,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a run (accuracy, BP, AP/mAP, confusion matrices) or a submission file",
        description="Score a run directory or checkpoint on its validation split (default), on the labelled test "
        "set (--split test, from DATA/Tests/answers.csv), or on any labelled file (--labels). With --answers, "
        "score a challenge answer file against --labels instead. Works under torchrun too.",
    )
    parser.add_argument("model", metavar="MODEL", nargs="?", help=f"{MODEL_HELP} (not with --answers)")
    add_data(parser)
    parser.add_argument("--split", choices=["val", "train", "test"], default="val", help="images to score (val)")
    parser.add_argument("--labels", metavar="FILE", help="a labelled file (label.csv format) to score on instead")
    parser.add_argument("--answers", metavar="FILE", help="score this answer file (path,attribute,p0;p1;...) "
                        "against --labels")  # fmt: skip
    add_tta(parser)
    add_no_calibration(parser, help="score the raw network probabilities, without the calibration temperatures "
                       "(accuracy and BP are the same; AP and the calibration error may differ)")  # fmt: skip
    parser.add_argument(
        "--batch-size", type=BATCH, default=64, metavar="N", help="images per forward pass (default 64)"
    )
    parser.add_argument("--workers", type=WORKERS, default=2, metavar="N", help="image decoding processes (default 2)")
    add_device(parser)
    add_out(parser, folder=True, help="folder for scores.json, report.md and confusion PNGs (default MODEL/eval-SPLIT)")
    parser.add_argument("--complete-labels", metavar="FILE",
                        help="also score the tags a catalogue would show for these images (every attribute asked of "
                        "every photo, shown only where it applies) against complete labels (path,attribute,value "
                        "rows; `fashionattr synth` writes DATA/Tests/complete.csv and "
                        "DATA/Annotations/complete.csv)")  # fmt: skip
    add_applicability_threshold(parser)
    parser.add_argument("--save-predictions", metavar="FILE", type=output_file,
                        help="also write every scored image's class probabilities in the answer-file format "
                        "(path,attribute,p0;p1;...), for error analysis and parity checks")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fashionattr.errors import UserError
    from fashionattr.render.tables import scores_table, tag_table

    if args.answers:
        from fashionattr.data.dataset import DatasetRoot
        from fashionattr.schema import FASHIONAI
        from fashionattr.submission import score_submission

        if not args.labels:
            raise UserError("--answers needs --labels, the labelled file to score it against")
        schema = DatasetRoot.open(args.data, require_labels=False).schema if args.data else FASHIONAI
        scores = score_submission(args.answers, args.labels, schema)
        print(scores_table(schema, scores.to_dict()))
        return 0
    if not args.model:
        raise UserError("give a run directory or checkpoint to evaluate (or --answers with --labels)")

    from fashionattr.checkpoint import resolve_checkpoint_path
    from fashionattr.data.overwrite import model_files, refuse_output_over_inputs
    from fashionattr.distributed import barrier, init_distributed, shutdown
    from fashionattr.evaluation import evaluate_checkpoint, evaluate_tags, write_evaluation
    from fashionattr.run_dir import REPORT_NAME, SCORES_NAME, RunDir, lock_folder
    from fashionattr.submission import write_submission

    labels = [("the label file", args.labels)] if args.labels else []
    folder = [("--out", Path(args.out) / name) for name in (SCORES_NAME, REPORT_NAME)] if args.out else []
    refuse_output_over_inputs([("--save-predictions", args.save_predictions), *folder],
                              [*model_files(args.model), *labels])  # fmt: skip
    context = init_distributed(args.device)
    try:
        result = evaluate_checkpoint(args.model, context, data=args.data, subset=args.split, labels=args.labels,
                                     tta=args.tta, batch_size=args.batch_size, workers=args.workers,
                                     calibrated=not args.no_calibration)  # fmt: skip
        if context.is_main:
            checkpoint = resolve_checkpoint_path(args.model)
            name = "labels" if args.labels else args.split
            out = Path(args.out) if args.out else RunDir(checkpoint.parent).evaluation(name)
            # Two evaluations into one folder take turns, so the folder ends up holding one of them whole.
            tags = None
            if args.complete_labels:
                tags = evaluate_tags(checkpoint, args.complete_labels, result, result.dataset, tta=args.tta,
                                     workers=args.workers, device=args.device,
                                     calibrated=not args.no_calibration,
                                     threshold=args.applicability_threshold)  # fmt: skip
            with lock_folder(out, "evaluation folder", wait=True):
                write_evaluation(result, out, tags)
            if args.save_predictions:
                rows, vectors = result.answer_rows()
                write_submission(args.save_predictions, rows, vectors, result.schema)
                print(f"wrote the probabilities of {len(rows)} image(s) to {args.save_predictions}")
            print(scores_table(result.schema, result.scores.to_dict(), result.measured.images))
            if tags is not None:
                print("\nTags a catalogue would show for these images (every attribute asked of each of "
                      f"{tags.images}):")  # fmt: skip
                print(tag_table(tags.to_dict()))
            if result.skipped:
                print(f"{len(result.skipped)} unreadable image(s) skipped; listed in {out / REPORT_NAME}")
            print(f"wrote {out / SCORES_NAME} and {out / REPORT_NAME}")
        # The other ranks wait for rank 0's writing: a rank tearing its process group down alone can abort.
        barrier(context)
    finally:
        shutdown(context)
    return 0
