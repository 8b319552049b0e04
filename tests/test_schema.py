"""The attribute schema: FashionAI's built in exactly, user schemas validated with clear errors."""

import json

import pytest

from fashionattr.schema import FASHIONAI, Schema, SchemaError, load_schema, schema_for_dataset

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
