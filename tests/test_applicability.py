"""Which attributes a photo shows: the fitted decision, its place in every answer, and the scores of shown tags."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fashionattr.applicability import THRESHOLD
from fashionattr.applicability.fitting import Embedded, fit_applicability
from fashionattr.applicability.modules import Applicability, build_applicability
from fashionattr.checkpoint import applicability_of, load_checkpoint
from fashionattr.cli import main
from fashionattr.data.complete_labels import TEST_COMPLETE_RELPATH
from fashionattr.inference import Predictor
from fashionattr.losses import applicability_loss
from fashionattr.schema import Schema
from fashionattr.tag_scores import UNDECIDED_TRUTH, TagAnswers, count_tags, precision_recall_curve, score_tags

SCHEMA = Schema.from_dict({"name": "toy", "attributes": [
    {"name": "skirt", "classes": ["Invisible", "short", "long"]},
    {"name": "collar", "classes": ["Invisible", "round", "pointed"]},
]})  # fmt: skip


def test_tag_precision_and_recall_count_what_is_shown_against_the_truth() -> None:
    answers = TagAnswers(
        truth=np.array([2, -1, UNDECIDED_TRUTH, 1, 2]),
        predicted=np.array([2, 1, 1, 2, 0]),
        applicability=np.array([0.9, 0.8, 0.7, 0.2, 0.9]),
        applies=np.array([True, True, True, False, False]),
        invisible_index=0,
    )
    counts = count_tags(answers)
    # shown where the truth is known: rows 0 (right) and 1 (the photo shows no such part: wrong); row 2 left out
    assert (counts.shown, counts.correct, counts.visible) == (2, 1, 3)
    assert counts.precision == 0.5 and counts.recall == pytest.approx(1 / 3)
    curve = precision_recall_curve([answers], points=3)  # thresholds 0, 0.5, 1
    assert curve["recall"] == [pytest.approx(1 / 3), pytest.approx(1 / 3), 0.0]
    assert curve["precision"][0] == pytest.approx(1 / 3)  # rows 0, 1, 3 shown (row 4's top class is Invisible)
    assert curve["precision"][2] is None  # nothing shown


def test_tag_rates_say_how_often_each_attribute_is_tagged_per_labelled_set() -> None:
    both = TagAnswers(np.array([1, 1]), np.array([1, 1]), np.array([1.0, 0.0]), np.array([True, False]))
    scores = score_tags({"skirt": both, "collar": both}, labelled=["skirt", "collar"])
    assert scores.tag_rates == {"skirt": {"skirt": 1.0, "collar": 1.0}, "collar": {"skirt": 0.0, "collar": 0.0}}
    assert scores.overall.shown == 2


def toy_embeddings(seed: int, per_group: int = 120) -> Embedded:
    """Feature 0 says a lower body is in the picture, feature 1 a neck. Skirt photos are lower bodies or full figures;
    collar photos close-ups or full figures: a full figure shows both, and both sets hold some."""
    rng = np.random.default_rng(seed)
    lower_body = rng.normal([3, -3, 0], 0.5, (per_group, 3))
    full_figure = rng.normal([3, 3, 0], 0.5, (2 * per_group, 3))
    closeup = rng.normal([-3, 3, 0], 0.5, (per_group, 3))
    covered = rng.normal([0, 0, 3], 0.5, (per_group // 4, 3))  # skirt photos labelled Invisible
    features = np.concatenate([lower_body, full_figure, closeup, covered]).astype(np.float32)
    attribute = np.array([0] * per_group + [0, 1] * per_group + [1] * per_group + [0] * (per_group // 4))
    target = np.array([1] * (4 * per_group) + [0] * (per_group // 4))
    return Embedded(features, attribute, target)


@pytest.mark.parametrize("method", ["probe", "mahalanobis"])
def test_learned_methods_tell_which_attributes_a_photo_shows(method: str) -> None:
    module = fit_applicability(method, toy_embeddings(0), toy_embeddings(1), SCHEMA, ["skirt", "collar"])
    points = torch.tensor([[3, -3, 0], [-3, 3, 0], [0, 0, 3], [3, 3, 0]], dtype=torch.float32)
    unsure = {name: torch.full((4, 3), 1 / 3) for name in ("skirt", "collar")}
    scores = module(points, unsure)
    relative = {name: (s / (2 / 3)).tolist() for name, s in scores.items()}  # without the Invisible factor
    assert relative["skirt"][0] >= THRESHOLD and relative["skirt"][1] < THRESHOLD  # a close-up has no skirt
    assert relative["collar"][1] >= THRESHOLD and relative["collar"][0] < THRESHOLD  # a lower body has no collar
    assert relative["skirt"][2] < THRESHOLD  # what only the skirt's Invisible images look like
    # a look both sets share (a full figure shows a skirt and a collar) stays positive for both
    assert relative["collar"][3] >= THRESHOLD and relative["skirt"][3] >= THRESHOLD


def test_the_invisible_probability_scales_every_score_and_a_stored_module_rebuilds_exactly() -> None:
    module = fit_applicability("probe", toy_embeddings(0), toy_embeddings(1), SCHEMA, ["skirt", "collar"])
    features = torch.tensor([[3.0, -3.0, 0.0]])
    sure_invisible = {"skirt": torch.tensor([[1.0, 0.0, 0.0]]), "collar": torch.tensor([[0.0, 1.0, 0.0]])}
    scores = module(features, sure_invisible)
    assert float(scores["skirt"][0]) == 0.0
    rebuilt = build_applicability(module.describe(), module.state_dict())
    again = rebuilt(features, sure_invisible)
    assert all(torch.equal(scores[name], again[name]) for name in scores)


def test_training_fits_the_decision_and_every_answer_carries_it(trained_run, capsys) -> None:
    stored = applicability_of(load_checkpoint(trained_run.checkpoint))
    assert stored is not None and stored[0]["method"] == "head"  # a multitask network learns it while training
    predictor = Predictor.from_path(trained_run.run, device="cpu")
    image = sorted((trained_run.data / "Images").rglob("*.jpg"))[0]
    [loaded] = predictor.models
    attribute = predictor.attributes[0]
    # A decision that says the first attribute never applies: its value disappears, the answer stays.
    never = Applicability(loaded.attributes, {})
    never.forward = lambda features, probabilities: {  # type: ignore[method-assign]
        name: (torch.zeros if name == attribute else torch.ones)(features.shape[0]) for name in loaded.attributes
    }
    loaded.applicability = never
    [prediction] = predictor.predict_letterboxed([predictor.load(image)])
    answer = prediction.attributes[attribute]
    assert answer.value is None and not answer.applies and answer.applicability == 0.0 and not answer.uncertain
    assert answer.to_dict()["applies"] is False and answer.to_dict()["value"] is None
    others = [a for name, a in prediction.attributes.items() if name != attribute]
    assert all(a.applies == (a.index != 0) for a in others)  # where the top class is Invisible, nothing is shown


def test_a_per_attribute_model_fits_the_probe_on_every_attribute_s_images(trained_per_attribute_run) -> None:
    for run in sorted(p for p in trained_per_attribute_run.run.iterdir() if p.is_dir()):
        stored = applicability_of(load_checkpoint(run / "best.pt"))
        assert stored is not None and stored[0]["method"] == "probe"  # it has no head: it saw only its own images


def test_the_applicability_loss_weighs_what_nobody_said_lightly() -> None:
    scores = torch.zeros(3, 2, requires_grad=True)
    attribute_index, targets, invisible = torch.tensor([0, 0, 1]), torch.tensor([1, 0, 2]), torch.tensor([0, 0])
    loss = applicability_loss(scores, attribute_index, targets, invisible, unlabelled_weight=0.1)
    loss.backward()
    grad = scores.grad
    assert grad is not None
    assert grad[0, 0] < 0 and grad[1, 0] > 0  # shows its own part; labelled Invisible: does not
    assert grad[2, 1] < 0  # the collar image shows a collar
    assert 0 < grad[0, 1] == pytest.approx(0.1 * grad[1, 0].item())  # others: a light negative


def test_evaluate_scores_the_catalogue_tags_against_complete_labels(trained_run, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    code = main(["evaluate", str(trained_run.run), "--split", "test", "--workers", "0", "--out", str(out),
                 "--complete-labels", str(trained_run.data / TEST_COMPLETE_RELPATH)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Tags a catalogue would show" in printed and "| **all** |" in printed
    tags = json.loads((out / "tags.json").read_text())
    assert tags["images"] == len({line.split(",")[0] for line in trained_run.answers.read_text().splitlines()})
    assert set(tags["attributes"]) == set(trained_run_attributes(trained_run))
    assert tags["curves"]["all"]["threshold"][0] == 0.0
    assert (out / "tag-precision-recall.png").stat().st_size > 0
    assert "## Tags as a catalogue shows them" in (out / "report.md").read_text()


def trained_run_attributes(trained_run) -> list[str]:
    return list(load_checkpoint(trained_run.checkpoint)["attributes"])
