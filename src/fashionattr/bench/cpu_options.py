"""Figure e: which of channels_last, bf16 autocast and torch.compile pay off on this CPU, for training and inference.

Each option runs through the same code the training config switches (`StepSettings`, `train_one_epoch`,
`predict_probabilities`) against eager fp32, side by side. torch.compile runs in a child process under a time limit,
because compiling can take minutes on a small CPU and cannot be interrupted from inside; its compile time is
reported apart from its speed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure, Measurement, Variant, compared, measure, sync
from fashionattr.bench.inputs import bench_preprocessing, image_batch, labelled_batch, new_model
from fashionattr.bench.isolation import run_probe
from fashionattr.bench.training import EngineTrainer
from fashionattr.engine import StepSettings, predict_probabilities

WIN = 1.05
"""An option is worth turning on when it is at least this much faster (smaller gains are within the noise)."""
CLEAR_LOSS = 0.5
SCREEN_BATCH = 2


@dataclass(frozen=True)
class Option:
    """A way of running the same model: mixed precision dtype and memory format."""

    name: str
    amp: torch.dtype | None = None
    channels_last: bool = False

    @property
    def slug(self) -> str:
        return self.name.split()[0].replace("+", "_")


class InferenceRunner:
    """Evaluation's forward pass (`predict_probabilities`) for one option, on its own copy of the model."""

    def __init__(self, context: BenchContext, option: Option, compiled: bool = False) -> None:
        self.device = context.device
        self.model = new_model(context).eval()
        if option.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.run_model: Any = torch.compile(self.model) if compiled else self.model
        self.settings = StepSettings(attributes=context.data.schema.names, augmentation=None,
                                     preprocessing=bench_preprocessing(context),
                                     amp_dtype=option.amp, channels_last=option.channels_last)  # fmt: skip
        self.images = image_batch(context)

    def step(self) -> int:
        predict_probabilities(self.run_model, self.images, self.settings)
        sync(self.device)
        return self.images.shape[0]


def _measure_options(context: BenchContext, options: list[Option], rounds: int, infer_rounds: int,
                     budget_s: float) -> tuple[Measurement, Measurement]:  # fmt: skip
    """Training steps, then inference, of every option side by side."""
    batch = labelled_batch(context)
    trainers = [EngineTrainer(context, batch, amp=o.amp, channels_last=o.channels_last) for o in options]
    training = measure([Variant(o.name, t.step) for o, t in zip(options, trainers, strict=True)],
                       rounds=rounds, warmup=1, budget_s=budget_s)  # fmt: skip
    del trainers
    runners = [InferenceRunner(context, o) for o in options]
    inference = measure([Variant(o.name, r.step) for o, r in zip(options, runners, strict=True)],
                        rounds=infer_rounds, warmup=1, budget_s=budget_s / 2)  # fmt: skip
    return training, inference


def clear_losers(context: BenchContext, options: list[Option]) -> list[Option]:
    """Options whose inference at a tiny batch runs under `CLEAR_LOSS` times the baseline's speed.

    bf16 on a CPU without bf16 instructions runs some 30 times slower than fp32: timing it at the full batch
    would take many minutes to tell what a batch of two tells in seconds.
    """
    small = replace(context, settings=replace(context.settings, batch_size=SCREEN_BATCH), shared={})
    runners = [InferenceRunner(small, o) for o in options]
    screen = measure([Variant(o.name, r.step) for o, r in zip(options, runners, strict=True)], rounds=1, warmup=1)
    return [o for o in options[1:] if screen.ratio(o.name, options[0].name) < CLEAR_LOSS]


def option_figures(context: BenchContext, key: str, options: list[Option], rounds: int,
                   budget_s: float) -> list[Figure]:  # fmt: skip
    """Training and inference figures of every option against the first one (the baseline)."""
    settings = context.settings
    baseline = options[0]
    losers = clear_losers(context, options)
    timed: dict[str, tuple[Measurement, Measurement, int]] = {}
    full = [o for o in options if o not in losers]
    if len(full) > 1:
        # Inference steps are cheap: two more rounds for them.
        training, inference = _measure_options(context, full, rounds, rounds + 2, budget_s)
        timed.update({o.name: (training, inference, settings.batch_size) for o in full})
    if losers:
        small = replace(context, settings=replace(settings, batch_size=SCREEN_BATCH), shared={})
        training, inference = _measure_options(small, [baseline, *losers], 1, 1, budget_s)
        timed.update({o.name: (training, inference, SCREEN_BATCH) for o in losers})
    figures: list[Figure] = []
    for option in options[1:]:
        training, inference, batch = timed[option.name]
        common = {"arch": settings.arch, "size": settings.img_size, "batch": batch, "device": str(context.device)}
        notes = []
        if option in losers:
            notes.append(f"ran under {CLEAR_LOSS}x of {baseline.name} at a batch of {SCREEN_BATCH}, so it was timed "
                         "at that batch only (a full batch would take minutes to show the same)")  # fmt: skip
        for kind, measurement in (("train", training), ("infer", inference)):
            what = "training step" if kind == "train" else "inference"
            figures.append(compared(f"{key}.{option.slug}.{kind}", f"{what}: {option.name} vs {baseline.name}",
                                    measurement, option.name, baseline.name, goal=WIN, settings=common,
                                    notes=notes))  # fmt: skip
    return figures


def cpu_options_figures(context: BenchContext) -> list[Figure]:
    cpu = replace(context, device=torch.device("cpu"), shared={})
    options = [Option("eager fp32"), Option("channels_last", channels_last=True),
               Option("bf16 autocast", amp=torch.bfloat16)]  # fmt: skip
    figures = option_figures(cpu, "e", options, rounds=context.settings.rounds, budget_s=90)
    figures.extend(compile_figures(cpu, "e", Option("eager fp32")))
    for figure in figures:
        figure.notes.append(f"an option counts as a win at >= {WIN}x; smaller differences are within the noise")
    return figures


def compile_figures(context: BenchContext, key: str, option: Option) -> list[Figure]:
    """torch.compile vs eager for training and inference, in a child process limited to the compile budget."""
    budget = context.settings.compile_budget_s
    titles = {"train": "training step: torch.compile vs eager", "infer": "inference: torch.compile vs eager"}
    if budget <= 0:
        return [Figure(f"{key}.compile.{kind}", title, skipped="compile budget is 0 (the default of --quick)")
                for kind, title in titles.items()]  # fmt: skip
    job = {"job": "compile", "data": str(context.data.root), "settings": context.settings.describe(),
           "device": str(context.device), "amp": str(option.amp).replace("torch.", "") if option.amp else None,
           "channels_last": option.channels_last}  # fmt: skip
    results, _ = run_probe(job, context.workdir, timeout_s=budget)
    figures = []
    for kind, title in titles.items():
        result = results.get(kind)
        if result is None:
            if "error" in results:
                reason = f"the compile job failed: {results['error']}"
            else:
                reason = (
                    f"compiling and measuring did not finish within the {budget:.0f} s budget (raise "
                    "--compile-budget); counted as no win"
                )
            figures.append(Figure(f"{key}.compile.{kind}", title, goal=WIN, skipped=reason))
            continue
        figures.append(Figure(
            f"{key}.compile.{kind}", title, ratio=result["ratio"], goal=WIN,
            values={"torch.compile": result["compiled"], "eager": result["eager"]},
            settings={"arch": context.settings.arch, "size": context.settings.img_size,
                      "batch": context.settings.batch_size, "device": str(context.device), "rounds": result["rounds"]},
            notes=[f"compiling took {result['compile_seconds']:.0f} s before the first step (cold cache), paid "
                   "again whenever shapes change"],
        ))  # fmt: skip
    return figures
