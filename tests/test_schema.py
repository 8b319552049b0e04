"""The attribute schema: FashionAI's built in exactly, user schemas validated with clear errors.

Hostile schema files: repeated keys, NaN, YAML aliases (a billion laughs), merge keys, Python tags and nesting
100,000 deep are refused by line by `check`, `split` and `train` (YAML 1.1's `No` stays text); attribute names
that cannot be file names (paths, `..`, control and look-alike characters, names equal up to case or Unicode form)
are refused before anything is written, and every path built from a name is checked again past the schema. A model
and data of different schemas, or models of two schemas in one folder, are never used together.
"""

import json
import shutil
from pathlib import Path

import pytest

from corpus import NAME_CASES, SCHEMA_CASES, SCHEMA_EDITS, NameCase, SchemaEdit, row
from fashionattr.cli import main
from fashionattr.data.dataset import DatasetRoot
from fashionattr.data.labels import LABELS_RELPATH, QUESTIONS_RELPATH
from fashionattr.run_dir import RunDir
from fashionattr.schema import FASHIONAI, Schema, SchemaError, load_schema, schema_for_dataset
from helpers import QUICK_TRAIN, refused, tiny_root

EXPECTED = [
    ("skirt_length_labels", ["Invisible", "Short Length", "Knee Length", "Midi Length", "Ankle Length",
                             "Floor Length"]),
    ("coat_length_labels", ["Invisible", "High Waist Length", "Regular Length", "Long Length", "Micro Length",
                            "Knee Length", "Midi Length", "Ankle&Floor Length"]),
    ("collar_design_labels", ["Invisible", "Shirt Collar", "Peter Pan", "Puritan Collar", "Rib Collar"]),
    ("lapel_design_labels", ["Invisible", "Notched", "Collarless", "Shawl Collar", "Plus Size Shawl"]),
    ("neck_design_labels", ["Invisible", "Turtle Neck", "Ruffle Semi-High Collar", "Low Turtle Neck",
                            "Draped Collar"]),
    ("neckline_design_labels", ["Invisible", "Strapless Neck", "Deep V Neckline", "Straight Neck", "V Neckline",
                                "Square Neckline", "Off Shoulder", "Round Neckline", "Sweat Heart Neck",
                                "One Shoulder Neckline"]),
    ("pant_length_labels", ["Invisible", "Short Pant", "Mid Length", "3/4 Length", "Cropped Pant", "Full Length"]),
    ("sleeve_length_labels", ["Invisible", "Sleeveless", "Cup Sleeves", "Short Sleeves", "Elbow Sleeves",
                              "3/4 Sleeves", "Wrist Length", "Long Sleeves", "Extra Long Sleeves"]),
]  # fmt: skip


def test_fashionai_has_all_54_class_names_in_order():
    assert [(a.name, list(a.classes)) for a in FASHIONAI] == EXPECTED
    assert sum(FASHIONAI.num_classes) == 54
    assert FASHIONAI.num_classes == [6, 8, 5, 5, 5, 10, 6, 9]


def test_fashionai_groupings():
    upper_lower = dict(FASHIONAI.grouping("upper-lower"))
    assert set(upper_lower["lower"]) == {"skirt_length_labels", "pant_length_labels"}
    assert len(upper_lower["upper"]) == 6
    design_length = dict(FASHIONAI.grouping("design-length"))
    assert set(design_length["design"]) == {
        "collar_design_labels", "lapel_design_labels", "neck_design_labels", "neckline_design_labels"}  # fmt: skip
    assert set(design_length["length"]) == {
        "coat_length_labels", "pant_length_labels", "skirt_length_labels", "sleeve_length_labels"}  # fmt: skip
    with pytest.raises(KeyError, match="no grouping"):
        FASHIONAI.grouping("colour")


def test_lookup_by_short_name_and_selection():
    assert FASHIONAI.attribute("coat_length").name == "coat_length_labels"
    assert FASHIONAI.resolve_names("sleeve_length,coat_length_labels") == ["coat_length_labels",
                                                                             "sleeve_length_labels"]  # fmt: skip
    assert FASHIONAI.resolve_names("all") == FASHIONAI.names
    with pytest.raises(KeyError, match="unknown attribute 'hat'"):
        FASHIONAI.resolve_names("hat")
    subset = FASHIONAI.subset(["skirt_length_labels", "neck_design_labels"])
    assert subset.names == ["skirt_length_labels", "neck_design_labels"]
    assert dict(subset.grouping("upper-lower")) == {"upper": ("neck_design_labels",), "lower": ("skirt_length_labels",)}


def test_round_trip_through_a_json_file(tmp_path):
    path = tmp_path / "schema.json"
    FASHIONAI.save(path)
    assert load_schema(path) == FASHIONAI
    assert schema_for_dataset(tmp_path) == FASHIONAI


def test_own_schema_from_yaml_is_used_by_its_dataset(tmp_path):
    (tmp_path / "schema.yaml").write_text(
        "name: shoes\nattributes:\n  - name: heel\n    classes: [Flat, Low, High]\n"
        "  - name: toe\n    classes: [Round, Pointed]\ngroupings:\n  all:\n    shoe: [heel, toe]\n"
    )
    schema = schema_for_dataset(tmp_path)
    assert schema.name == "shoes"
    assert schema.num_classes == [3, 2]
    assert dict(schema.grouping("all")) == {"shoe": ("heel", "toe")}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"attributes": [{"name": "a", "classes": ["x", "y"]}, {"name": "a", "classes": ["x", "y"]}]}, "defined twice"),
        ({"attributes": [{"name": "a", "classes": ["only"]}]}, "at least 2"),
        ({"attributes": [{"name": "a", "classes": ["x", "x"]}]}, "repeats class"),
        ({"attributes": [{"name": "a", "classes": ["x", "y"]}], "groupings": {"g": {"one": ["b"]}}},
         "unknown attribute 'b'"),
        ({"attributes": []}, "non-empty list"),
        ({"attributes": [{"name": "a"}]}, "must have 'name' and 'classes'"),
        ({"attributes": [{"name": "a,b", "classes": ["x", "y"]}]}, "comma"),
        # Class names keep the rules attribute names keep: distinct ignoring case and Unicode form, one line.
        ({"attributes": [{"name": "a", "classes": ["Long", "long"]}]}, "'Long' and 'long', one name when letter case"),
        ({"attributes": [{"name": "a", "classes": ["caf\u00e9", "cafe\u0301"]}]}, "Unicode form do not count"),
        ({"attributes": [{"name": "a", "classes": ["x", " "]}]}, "is empty"),
        ({"attributes": [{"name": "a", "classes": ["x", "y\nz"]}]}, "control character"),
        ({"attributes": [{"name": "a", "classes": ["x", " y"]}]}, "white space"),
        # Every field of its exact type: nothing is converted to a string behind the user's back.
        ({"attributes": [{"name": None, "classes": ["x", "y"]}]}, "'name' must be a string, got null"),
        ({"attributes": [{"name": 5, "classes": ["x", "y"]}]}, "'name' must be a string, got int"),
        ({"name": None, "attributes": [{"name": "a", "classes": ["x", "y"]}]}, "schema's 'name' must be a string"),
        ({"attributes": [{"name": "a", "classes": ["x", "y"]}], "groupings": {"g": {"one": [1]}}}, "lists of attr"),
        # Counts are bounded before a model is built from them.
        ({"attributes": [{"name": "a", "classes": [f"c{i}" for i in range(1001)]}]}, "at most 1000"),
    ],
)  # fmt: skip
def test_invalid_schemas_are_refused_with_the_file_named(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=message) as info:
        load_schema(path)
    assert str(path) in str(info.value)


def test_unparseable_schema_file(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        load_schema(path)


def test_schema_equality_is_by_value():
    again = Schema.from_dict(FASHIONAI.to_dict())
    assert again == FASHIONAI


# --- schema files are read strictly -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", SCHEMA_CASES, ids=[case.id for case in SCHEMA_CASES])
def test_schema_files_are_read_strictly(synthetic_data, tmp_path, capsys, case):
    root = tiny_root(tmp_path / "data", synthetic_data)
    schema = root / ("schema.json" if case.id.startswith("json") else "schema.yaml")
    schema.write_bytes(case.text.encode("utf-8", "surrogateescape"))
    if case.words is None:
        assert main(["check", str(root)]) == 0, capsys.readouterr().err
        classes = DatasetRoot.open(root).schema.attribute("coat_length_labels").classes
        assert classes == ("No", "Yes", "On", "Off", "Y", "N", "~x", "1:20")
        return
    where = f"{schema}:{case.line}: " if case.line else f"{schema}: "
    for argv in (["check", str(root)], ["split", str(root), "--out", str(tmp_path / "split.csv")],
                 ["train", str(root), "--out", str(tmp_path / "run"), *QUICK_TRAIN]):  # fmt: skip
        refused(argv, where, case.words)
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


# --- names from a schema never become paths outside the chosen folder -------------------------------------------

COAT_CLASSES = ["Invisible", "High Waist", "Regular", "Long", "Micro", "Knee", "Midi", "Ankle&Floor"]


@pytest.mark.parametrize("case", NAME_CASES, ids=[case.id for case in NAME_CASES])
def test_attribute_names_that_cannot_be_file_names_are_refused_by_the_schema(synthetic_data, tmp_path, capsys,
                                                                             case: NameCase):  # fmt: skip
    root = tiny_root(tmp_path / "data", synthetic_data)
    names = [name.format(tmp=tmp_path) for name in case.names]
    attributes = [{"name": "coat_length_labels", "classes": COAT_CLASSES},
                  *({"name": name, "classes": ["P", "Q"]} for name in names)]  # fmt: skip
    schema = root / "schema.json"
    schema.write_text(json.dumps({"name": "mine", "attributes": attributes}), encoding="utf-8")
    out = tmp_path / "out"
    if case.words is None:
        assert main(["check", str(root), "--no-images"]) == 0, capsys.readouterr().err
        loaded = DatasetRoot.open(root).schema
        folders = [RunDir(out).attribute_run(attribute.short_name).path for attribute in loaded]
        assert [folder.parent for folder in folders] == [out] * (len(names) + 1)
        assert len({folder.name.casefold() for folder in folders}) == len(folders)
        return
    for argv in (["check", str(root), "--no-images"],
                 ["train", str(root), "--layout", "per-attribute", "--out", str(out), *QUICK_TRAIN],
                 ["grid", str(root), "--archs", "test_resnet", "--out", str(out), *QUICK_TRAIN[2:]]):  # fmt: skip
        refused(argv, f"{schema}: ", case.words)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]  # nothing written, inside or out


def test_every_path_built_from_a_name_is_checked_even_past_the_schema(tmp_path):
    """Defence in depth: a schema built around the checks still cannot steer a write out of the folder."""
    from fashionattr.grid import plan_cells
    from fashionattr.names import UnsafeNameError
    from fashionattr.report import write_run_report
    from fashionattr.run_dir import confusion_plot_name
    from fashionattr.schema import Attribute

    escape = Attribute(f"{tmp_path}/ESCAPED_labels", ("P", "Q"))
    for build in (lambda: RunDir(tmp_path / "run").attribute_run(escape.short_name),
                  lambda: confusion_plot_name("../../ESCAPED"),
                  lambda: plan_cells(tmp_path / "grid", ["test_resnet"], ["per-attribute"], [escape]),
                  lambda: plan_cells(tmp_path / "grid", ["../x"], ["multitask"], [escape])):  # fmt: skip
        with pytest.raises(UnsafeNameError, match="cannot name a file or folder"):
            build()
    unchecked = object.__new__(Schema)  # bypasses the schema's own checks
    object.__setattr__(unchecked, "name", "x")
    object.__setattr__(unchecked, "attributes", (escape,))
    object.__setattr__(unchecked, "groupings", {})
    scores = {"attributes": {escape.name: {"count": 1, "accuracy": 1.0, "average_precision": 1.0,
                                           "confusion": [[1, 0], [0, 0]]}},
              "count": 1, "basic_precision": 1.0, "mean_average_precision": 1.0}  # fmt: skip
    summary = {"arch": "a", "layout": "multitask", "best_epoch": 1, "epochs_run": 1}
    with pytest.raises(UnsafeNameError):
        write_run_report(RunDir(tmp_path / "run"), unchecked, [{"epoch": 1, "train_loss": 1.0}], summary, scores)
    assert not (tmp_path / "ESCAPED_labels").exists() and not Path(f"{tmp_path}/ESCAPED").exists()
    assert not list((tmp_path / "run").rglob("confusion_*"))


# --- a model and data of different schemas ----------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("edit", SCHEMA_EDITS, ids=[edit.id for edit in SCHEMA_EDITS])
def test_submit_and_evaluate_refuse_data_whose_schema_gives_the_model_s_attributes_other_classes(
    trained_run, synthetic_data, tmp_path, capsys, edit: SchemaEdit
):
    root = tiny_root(tmp_path / "data", synthetic_data)
    schema = FASHIONAI.to_dict()
    entries = schema["attributes"]
    index = next(n for n, entry in enumerate(entries) if entry["name"] == edit.attribute)
    if edit.classes is None:
        del entries[index]
        schema["groupings"], schema["categories"] = {}, {}
    else:
        entries[index]["classes"] = list(edit.classes)
    (root / "schema.json").write_text(json.dumps(schema))
    (root / "Tests").mkdir()
    (root / QUESTIONS_RELPATH).write_text(row("Images/coat_length_labels/a.jpg", label="?"))
    answers = tmp_path / "answers.csv"
    submit = ["submit", str(trained_run.run), str(root / QUESTIONS_RELPATH), "--out", str(answers), "--workers", "0"]
    evaluate = ["evaluate", str(trained_run.run), "--data", str(root), "--labels", str(root / LABELS_RELPATH),
                "--out", str(tmp_path / "eval"), "--workers", "0"]  # fmt: skip
    for argv, words in ((submit, edit.submit), (evaluate, edit.evaluate)):
        if words is None:
            assert main(argv) == 0, capsys.readouterr().err
        else:
            refused(argv, "trained on another schema", words)
    assert answers.exists() == (edit.submit is None)
    assert (tmp_path / "eval").exists() == (edit.evaluate is None)


@pytest.fixture(scope="module")
def mixed_schema_folder(trained_per_attribute_run, tmp_path_factory) -> Path:
    """A per-attribute folder whose sleeve-length model was trained on a schema that gives coat length 8 other names.

    Its weights fit; only the schema it was trained on differs, so its answers would be named by the wrong schema.
    """
    from fashionattr.checkpoint import load_checkpoint, save_checkpoint

    folder = tmp_path_factory.mktemp("mixed") / "runs"
    shutil.copytree(trained_per_attribute_run.run, folder)
    best = RunDir(folder / "sleeve_length").best
    payload = load_checkpoint(best)
    for entry in payload["schema"]["attributes"]:
        if entry["name"] == "coat_length_labels":
            entry["classes"] = list("ABCDEFGH")
    save_checkpoint(best, payload)
    return folder


MIXED_COMMANDS = [
    ("predict", ["predict", "{runs}", "{images}", "--workers", "0"]),
    ("predict-attributes", ["predict", "{runs}", "{images}", "--attributes", "sleeve_length", "--workers", "0"]),
    ("submit", ["submit", "{runs}", "{data}/Tests/question.csv", "--out", "{tmp}/answers.csv", "--workers", "0"]),
    ("serve", ["serve", "{runs}", "--port", "0"]),
    ("catalog-index", ["catalog", "index", "{runs}", "{images}", "--catalog", "{tmp}/catalog.sqlite",
                       "--workers", "0", "--device", "cpu"]),
]  # fmt: skip


@pytest.mark.timeout(120)
@pytest.mark.parametrize("argv", [argv for _, argv in MIXED_COMMANDS], ids=[name for name, _ in MIXED_COMMANDS])
def test_models_of_two_schemas_are_never_used_as_one(mixed_schema_folder, trained_run, tmp_path, argv):
    command = [part.format(runs=mixed_schema_folder, data=trained_run.data, tmp=tmp_path,
                           images=trained_run.data / "Images" / "sleeve_length_labels") for part in argv]  # fmt: skip
    refused(command, f"{mixed_schema_folder / 'sleeve_length' / 'best.pt'}: trained on another schema than "
            f"the other models under {mixed_schema_folder}: attribute 'coat_length_labels' has 8 classes (A, B, C, D, "
            "...) in the model but 8 (Invisible, High Waist Length")  # fmt: skip
    assert not (tmp_path / "answers.csv").exists()
