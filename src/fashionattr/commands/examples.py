"""The Examples section of every command's --help, kept in one table so that all of them use one grammar: the
model first (MODEL), `--out` for what a command writes, `--catalog` for the catalogue, attributes by either name.

`attach_examples` adds them to the parser `cli.build_parser` made, with a formatter that wraps the description as
prose but prints the example lines as written; a test checks that every command and catalogue action has some.
"""

from __future__ import annotations

import argparse
import textwrap

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "demo": [
        ("the whole demo: data, training, scores, report", "fashionattr demo --out runs/demo"),
        ("a quicker look", "fashionattr demo --out runs/quick --epochs 8 --per-class 80"),
    ],
    "synth": [
        ("a small dataset", "fashionattr synth --out data/synth --per-class 40 --size 256"),
        ("the contact sheet of every class only", "fashionattr synth --preview sheet.png"),
    ],
    "import-folders": [
        ("one attribute: photos/<class>/*.jpg", "fashionattr import-folders photos/ DATA --attribute sleeve"),
        ("several: photos/<attribute>/<class>/*.jpg", "fashionattr import-folders photos/ DATA"),
    ],
    "check": [
        ("every label row and image", "fashionattr check DATA"),
        ("the label files only", "fashionattr check DATA --no-images"),
    ],
    "split": [("DATA/Annotations/split.csv, 4:1 by seed", "fashionattr split DATA --seed 0")],
    "prepare": [("the cache train will read at 224 px", "fashionattr prepare DATA --size 224")],
    "recipes": [
        ("the recipes, one line each", "fashionattr recipes"),
        ("every setting of one", "fashionattr recipes cpu-demo"),
    ],
    "train": [
        ("from a recipe", "fashionattr train DATA --recipe cpu-demo --out runs/demo"),
        (
            "the study's method, one model per attribute",
            "fashionattr train DATA --arch se-resnet50 --layout per-attribute --epochs 50 --out runs/seresnet50",
        ),
        ("carry on after an interruption", "fashionattr train --config my-run.yaml --resume --out runs/mt"),
    ],
    "evaluate": [
        ("the validation split", "fashionattr evaluate runs/demo/run"),
        ("the labelled test set, with flip TTA", "fashionattr evaluate runs/demo/run --split test --tta"),
        ("a copied run whose dataset moved", "fashionattr evaluate run-copy/ --data /data/fashionai"),
        ("an answer file", "fashionattr evaluate --answers answer.csv --labels DATA/Tests/answers.csv"),
    ],
    "grid": [
        ("the seed study's table", "fashionattr grid DATA --recipe seed-study --out runs/grid"),
        ("machine 2 of 4 sharing the folder", "fashionattr grid DATA --out /shared/grid --shard 2/4"),
    ],
    "report": [
        ("rebuild a grid's table", "fashionattr report runs/grid"),
        ("rebuild a run's report", "fashionattr report runs/demo/run"),
    ],
    "predict": [
        ("a table on the terminal", "fashionattr predict runs/demo/run photos/"),
        (
            "JSON lines, some attributes",
            "fashionattr predict model.onnx photos/ --out tags.jsonl --attributes sleeve_length,collar_design",
        ),
    ],
    "submit": [
        (
            "the challenge's answer file",
            "fashionattr submit runs/demo/run DATA/Tests/question.csv --out answer.csv --tta",
        )
    ],
    "export": [("one ONNX file for serving without PyTorch", "fashionattr export runs/demo/run --out model.onnx")],
    "serve": [
        ("the service and its page on http://127.0.0.1:8000/", "fashionattr serve runs/demo/run"),
        (
            "with a catalogue and a review queue",
            "fashionattr serve runs/demo/run --catalog catalog.sqlite --review review/",
        ),
    ],
    "catalog": [
        ("tag a folder into a catalogue", "fashionattr catalog index runs/demo/run photos/ --catalog catalog.sqlite"),
        (
            "search it by tags",
            "fashionattr catalog search --catalog catalog.sqlite --where 'sleeve_length=Long Sleeves'",
        ),
    ],
    "catalog index": [
        ("an SQLite catalogue", "fashionattr catalog index runs/demo/run photos/ --catalog catalog.sqlite"),
        (
            "a shared PostgreSQL catalogue",
            "fashionattr catalog index runs/demo/run /shared/photos --catalog postgresql://tagger@db.example/catalog",
        ),
        (
            "photos filed under product categories (path,category rows)",
            "fashionattr catalog index runs/demo/run shop/ --catalog catalog.sqlite --categories shop/categories.csv",
        ),
    ],
    "catalog search": [
        (
            "two tags at 85% or more",
            "fashionattr catalog search --catalog catalog.sqlite --where "
            "'sleeve_length=Long Sleeves' --where 'collar_design=Shirt Collar' --min-confidence 0.85",
        )
    ],
    "catalog similar": [
        ("the ten most alike", "fashionattr catalog similar photos/dress.jpg --catalog catalog.sqlite -k 10")
    ],
    "catalog facets": [
        (
            "counts among full-length trousers",
            "fashionattr catalog facets --catalog catalog.sqlite --where 'pant_length=Full Length'",
        )
    ],
    "calibrate": [("fit the temperatures of an older run", "fashionattr calibrate runs/old-run")],
    "explain": [
        ("a heatmap per attribute of each photo", "fashionattr explain runs/demo/run photos/ --out heatmaps/"),
        (
            "the evidence for one class",
            "fashionattr explain runs/demo/run dress.jpg --attribute "
            "skirt_length --class 'Knee Length' --out heatmaps/",
        ),
        ("the pointing game on the part boxes", "fashionattr explain runs/demo/run --pointing-game"),
    ],
    "review": [
        ("candidates on the validation split", "fashionattr review runs/demo/run --out review/"),
        ("then decide on them in the browser", "fashionattr serve runs/demo/run --review review/"),
        (
            "the training split by 5-fold cross-validation",
            "fashionattr review runs/demo/run --split train --folds 5 --out review-train/",
        ),
    ],
    "bench": [
        ("the quick figures", "fashionattr bench --quick"),
        ("the catalogue figures, as JSON too", "fashionattr bench --only catalog --out bench.json"),
    ],
}


def examples_text(name: str) -> str | None:
    entries = EXAMPLES.get(name)
    if not entries:
        return None
    lines = ["examples:"]
    for what, command in entries:
        lines += [f"  # {what}", f"  {command}"]
    return "\n".join(lines)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that lines indented by two spaces (the examples) are printed as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.split("\n\n")
        out = []
        for paragraph in paragraphs:
            if all(line.startswith("  ") or line.endswith(":") for line in paragraph.splitlines()):
                out.append(textwrap.indent(paragraph, indent))
            else:
                out.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(out)


def command_parsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser by its name as typed after `fashionattr`, e.g. `catalog index`."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                full = f"{prefix} {name}".strip()
                found[full] = child
                found.update(command_parsers(child, full))
    return found


def attach_examples(parser: argparse.ArgumentParser) -> None:
    for name, child in command_parsers(parser).items():
        child.formatter_class = HelpFormatter
        text = examples_text(name)
        if text:
            child.epilog = text
