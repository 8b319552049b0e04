"""One grammar for the command line: every command's help has examples and help on every option, numbers are typed
as parsed, the model is MODEL, outputs are --out, the catalogue is --catalog, and the old spellings still work for a
release with a one-line note. Progress in a redirected log is lines, never carriage-return frames."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fashionattr.cli import build_parser, main
from fashionattr.commands.examples import command_parsers
from helpers import TrainedRun, cli_command

PARSERS = command_parsers(build_parser())
COMMANDS = [name for name, parser in PARSERS.items() if not any(
    isinstance(a, argparse._SubParsersAction) for a in parser._actions)]  # fmt: skip


def options_of(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("name", list(PARSERS))
def test_every_command_help_has_examples_of_itself(name: str) -> None:
    text = PARSERS[name].format_help()
    assert "examples:" in text, name
    examples = text.split("examples:", 1)[1]
    assert f"fashionattr {name}" in examples, examples


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help_and_every_number_is_typed_as_parsed(name: str) -> None:
    for action in options_of(PARSERS[name]):
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{name} {label} has no help"
        assert action.type not in (int, float), f"{name} {label}: a bare type={action.type.__name__} has no range"


MODEL_COMMANDS = ["predict", "submit", "export", "serve", "evaluate", "calibrate", "explain", "review",
                  "catalog index"]  # fmt: skip


@pytest.mark.parametrize("name", MODEL_COMMANDS)
def test_the_model_is_named_model_in_every_command(name: str) -> None:
    positionals = [a for a in PARSERS[name]._actions if not a.option_strings]
    assert positionals[0].metavar == "MODEL", (name, [a.metavar for a in positionals])


def test_outputs_are_out_and_catalogues_are_catalog_everywhere() -> None:
    for name, parser in PARSERS.items():
        spellings = {s for a in options_of(parser) for s in a.option_strings}
        assert not spellings & {"--output", "--onnx", "--db", "--json"}, (name, spellings)
        if name.startswith("catalog "):
            assert "--catalog" in spellings, name


def test_a_training_number_out_of_range_is_refused_by_the_config_rule(capsys) -> None:
    assert main(["train", "data", "--epochs", "0"]) == 2
    assert "epochs must be at least 1, got 0" in capsys.readouterr().err
    assert main(["train", "data", "--lr", "fast"]) == 2
    assert "expected a number, got 'fast'" in capsys.readouterr().err


def test_help_defaults_come_from_the_training_config() -> None:
    from fashionattr.config import TrainConfig

    text = " ".join(PARSERS["train"].format_help().split())
    assert f"epochs (default {TrainConfig.epochs})" in text
    assert f"(default {TrainConfig.ema_decay:g})" in text


def test_old_spellings_still_work_with_a_note(trained_run: TrainedRun, tmp_path: Path, capsys) -> None:
    image = sorted((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))[0]
    out = tmp_path / "tags.json"
    assert main(["predict", str(trained_run.run), str(image), "--output", str(out), "--workers", "0"]) == 0
    assert out.is_file() and "--output is now --out" in capsys.readouterr().err
    db = tmp_path / "catalog.sqlite"
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / image.name).write_bytes(image.read_bytes())
    assert main(["catalog", "index", str(folder), "--model", str(trained_run.run), "--db", str(db), "--workers",
                 "0"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "--model is now the first argument (MODEL)" in err and "--db is now --catalog" in err
    assert main(["catalog", "facets", "--db", str(db)]) == 0
    assert main(["catalog", "facets"]) == 2
    assert "required: --catalog" in capsys.readouterr().err


def test_a_redirected_run_logs_progress_as_lines_without_carriage_returns(tmp_path: Path) -> None:
    log = tmp_path / "synth.log"
    with log.open("wb") as handle:
        done = subprocess.run(cli_command("synth", "--out", tmp_path / "data", "--per-class", "1", "--size", "32",
                                          "--workers", "1"), stdout=handle,
                              stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                              timeout=300)  # fmt: skip
    assert done.returncode == 0
    text = log.read_bytes()
    assert b"\r" not in text
    assert b"synth: " in text and b"(100%)" in text  # the log-friendly progress lines
