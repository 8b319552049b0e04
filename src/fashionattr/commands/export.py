"""`fashionattr export MODEL --out model.onnx`: one self-contained ONNX file for serving without PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from fashionattr.commands.options import TORCH_MODEL_HELP, add_model, add_no_calibration, add_out, count, output_file

MAX_DIFFERENCE = 1e-3
"""A larger probability difference between ONNX Runtime and PyTorch means the export is wrong, not rounding."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX (uint8 images in, probabilities and embedding out)",
        description="Export a checkpoint, run directory or per-attribute folder to one ONNX file with a dynamic "
        "batch axis. Input `images`: uint8 letterboxed images (N,3,S,S); normalisation and softmax are inside "
        "the graph. Outputs: one probability tensor per attribute (named by the attribute) and `embedding`. "
        "A per-attribute folder becomes one graph holding all its models. Schema, preprocessing and spec are "
        "stored in the file's metadata, so `fashionattr predict model.onnx ...` needs nothing else.",
    )
    add_model(parser, help=TORCH_MODEL_HELP)
    add_out(parser, required=True, old=("--onnx",), help="ONNX file to write (must end in .onnx)")
    parser.add_argument("--opset", type=count(7, 30), metavar="N", help="ONNX opset version (default 17)")
    add_no_calibration(parser, help="export the raw network probabilities, without the calibration temperatures")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip comparing ONNX Runtime with PyTorch on random images after export")  # fmt: skip
    parser.add_argument("--int8", metavar="FILE", type=output_file,
                        help="also write an int8 copy of the graph for CPUs (ONNX Runtime static quantization, "
                        "calibrated on the run's validation images); use it like any .onnx file")  # fmt: skip
    parser.add_argument(
        "--calibration-images",
        metavar="DIR",
        help="with --int8: calibrate on the images in DIR instead of the run's validation split",
    )
    parser.add_argument("--calibration-count", type=count(1, 100_000), default=256, metavar="N",
                        help="with --int8: calibrate on N images (default 256)")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from fashionattr.data.overwrite import model_files, refuse_output_over_inputs
    from fashionattr.inference.export import DEFAULT_OPSET, export_onnx
    from fashionattr.inference.parity import onnx_parity

    refuse_output_over_inputs([("--out", args.out)], model_files(args.model))
    opset = args.opset or DEFAULT_OPSET
    calibrated = not args.no_calibration
    result = export_onnx(args.model, args.out, opset=opset, calibrated=calibrated)
    difference = None if args.no_verify else onnx_parity(args.model, result.path, calibrated=calibrated)
    inputs = ", ".join(f"{item['name']} uint8 (N,3,{item['img_size']},{item['img_size']})" for item in result.inputs)
    print(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, opset {opset})")
    print(f"  inputs:  {inputs}")
    print(f"  outputs: {', '.join(result.attributes)}, embedding ({result.embedding_size})")
    if difference is not None:
        print(f"  largest probability difference from PyTorch on random images: {difference:.2e}")
        if difference > MAX_DIFFERENCE:
            message = (f"ONNX Runtime disagrees with PyTorch by {difference:.2e} (over {MAX_DIFFERENCE:g}); "
                       f"do not serve {result.path}; try another --opset")  # fmt: skip
            print(f"fashionattr export: error: {message}", file=sys.stderr)
            return 1
    if args.int8:
        _write_int8(args, result.path)
    return 0


def _write_int8(args: argparse.Namespace, fp32: Path) -> None:
    """The int8 copy, calibrated on N images; its agreement with fp32 on up to 256 other images of the same kind."""
    from fashionattr.inference.quantize import folder_images, int8_agreement, quantize_int8, run_validation_images

    chosen = args.calibration_images
    images = folder_images(chosen) if chosen else run_validation_images(args.model)
    calibration, held_out = images[: args.calibration_count], images[args.calibration_count :][:256]
    result = quantize_int8(fp32, args.int8, calibration)
    print(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, int8; calibrated on {result.calibration_images} "
          "images)")  # fmt: skip
    if held_out:
        agreement = int8_agreement(fp32, result.path, held_out)
        print(f"  against the fp32 graph on {agreement.images} other images: the same top class for "
              f"{100 * agreement.top_class:.1f}% of the answers, largest probability difference "
              f"{agreement.largest_difference:.3f}")  # fmt: skip
