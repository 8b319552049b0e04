"""The tagged catalogue: incremental indexing, interrupted runs, tag search and facets, similar images, the CLI.

Every test that builds a catalogue runs twice, on an SQLite file and on a real PostgreSQL server (`catalog_db`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fashionattr.catalog import Catalog, index_catalog, open_store
from fashionattr.cli import main
from fashionattr.errors import UserError
from fashionattr.inference import Predictor
from fashionattr.schema import FASHIONAI
from helpers import (
    CATALOG_BACKENDS,
    Interrupted,
    InterruptingPredictor,
    TrainedRun,
    catalogue_predictor,
    make_photo_folder,
)


def index_quietly(db: Path, folder: Path, run: Path, predictor: Any, batch_size: int = 4) -> Any:
    return index_catalog(db, folder, run, predictor=predictor, batch_size=batch_size, workers=0, progress=False)


@pytest.fixture(scope="module")
def predictor(trained_run: TrainedRun) -> Any:
    return catalogue_predictor(trained_run.run)


@pytest.fixture
def photos(trained_run: TrainedRun, tmp_path: Path) -> Path:
    return make_photo_folder(trained_run.data, tmp_path / "photos")


@pytest.fixture(scope="module", params=CATALOG_BACKENDS)
def indexed(request: pytest.FixtureRequest, trained_run: TrainedRun, predictor: Predictor,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:  # fmt: skip
    """One indexed catalogue per backend, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("indexed")
    photos = make_photo_folder(trained_run.data, folder / "photos")
    postgres = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    db = postgres.new_database() if postgres else str(folder / "catalog.sqlite")
    index_quietly(db, photos, trained_run.run, predictor)
    catalog = Catalog(db)
    yield catalog
    catalog.close()


def test_index_tags_every_image_and_records_the_unreadable_one(photos, trained_run, predictor, catalog_db):
    db = catalog_db
    report = index_quietly(db, photos, trained_run.run, predictor)
    assert (report.added, report.updated, report.unchanged, report.removed) == (9, 0, 0, 0)
    assert [path for path, _ in report.errors] == ["broken.jpg"]
    catalog = Catalog(db)
    assert len(catalog) == 9
    assert catalog.root == photos.resolve()
    assert catalog.attributes == FASHIONAI.names
    item = catalog.item("coat_length/" + sorted((photos / "coat_length").iterdir())[0].name, probabilities=True)
    assert item is not None and list(item.tags) == FASHIONAI.names
    for name, tag in item.tags.items():
        assert tag.probabilities is not None and list(tag.probabilities) == list(FASHIONAI.attribute(name).classes)
        top = max(tag.probabilities, key=tag.probabilities.get)
        assert tag.value == (top if tag.applies else None)  # a tag that does not apply to the photo shows no value
        assert tag.confidence == pytest.approx(max(tag.probabilities.values()))
    ids, matrix = catalog.embeddings()
    assert matrix.dtype == np.float32 and matrix.shape[0] == len(ids) == 9
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


def test_reindex_skips_unchanged_and_picks_up_changed_and_removed_files(photos, trained_run, predictor, catalog_db):
    db = catalog_db
    index_quietly(db, photos, trained_run.run, predictor)
    again = index_quietly(db, photos, trained_run.run, predictor)
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, 9, 0)
    assert [path for path, _ in again.errors] == ["broken.jpg"]

    coats = sorted((photos / "coat_length").iterdir())
    sleeves = sorted((photos / "sleeve_length").iterdir())
    changed = coats[0]
    before = Catalog(db).item(f"coat_length/{changed.name}")
    shutil.copy(sleeves[0], changed)  # new content under the old name
    sleeves[1].unlink()
    (photos / "broken.jpg").unlink()
    shutil.copy(coats[1], photos / "new.jpg")

    report = index_quietly(db, photos, trained_run.run, predictor)
    assert (report.added, report.updated, report.unchanged, report.removed) == (1, 1, 7, 1)
    assert report.errors == []
    catalog = Catalog(db)
    after = catalog.item(f"coat_length/{changed.name}")
    assert before is not None and after is not None
    assert after.id == before.id and after.sha256 != before.sha256
    assert catalog.item(f"sleeve_length/{sleeves[1].name}") is None
    assert catalog.item("new.jpg") is not None
    assert len(catalog) == 9 and catalog.errors() == []


def test_an_interrupted_index_leaves_a_consistent_database_and_a_rerun_finishes(photos, trained_run, predictor,
                                                                                catalog_db):  # fmt: skip
    db = catalog_db
    with pytest.raises(Interrupted):
        index_quietly(db, photos, trained_run.run, InterruptingPredictor(predictor, after=6), batch_size=4)
    store = open_store(db)
    items = store.db.execute("SELECT COUNT(*) FROM items")[0][0]
    errors = store.db.execute("SELECT COUNT(*) FROM errors")[0][0]
    incomplete = store.db.execute("SELECT COUNT(*) FROM items i WHERE (SELECT COUNT(*) FROM tags t "
                                  "WHERE t.item_id = i.id) != ?", [len(FASHIONAI)])[0][0]  # fmt: skip
    store.close()
    assert items + errors == 4  # the first batch of four (broken.jpg sorts first) committed, the second never did
    assert incomplete == 0
    report = index_quietly(db, photos, trained_run.run, predictor)
    assert (report.added, report.unchanged) == (9 - items, items)
    assert len(Catalog(db)) == 9


def test_indexing_another_folder_into_the_same_database_is_refused(photos, trained_run, predictor, catalog_db):
    db = catalog_db
    index_quietly(db, photos / "coat_length", trained_run.run, predictor)
    with pytest.raises(UserError, match="indexes"):
        index_quietly(db, photos / "pant_length", trained_run.run, predictor)


def test_search_returns_only_items_with_every_filtered_tag(indexed):
    facets = indexed.facets()
    attribute, value = next((a, v) for a, counts in facets.items() for v, n in counts.items() if n > 0)
    result = indexed.search({attribute: value}, limit=100)
    assert result.total == facets[attribute][value] == len(result.items)
    assert all(item.tags[attribute].value == value for item in result.items)
    confidences = [item.tags[attribute].confidence for item in result.items]
    assert confidences == sorted(confidences, reverse=True)

    threshold = float(np.median(confidences))
    confident = indexed.search({attribute: value}, min_confidence=threshold, limit=100)
    assert 0 < confident.total <= result.total
    assert all(item.tags[attribute].confidence >= threshold for item in confident.items)

    other = next(a for a in indexed.attributes if a != attribute)
    both = indexed.search({attribute: value, other: result.items[0].tags[other].value}, limit=100)
    assert result.items[0].id in {item.id for item in both.items}
    assert all(item.tags[other].value == result.items[0].tags[other].value for item in both.items)

    page = indexed.search({attribute: value}, limit=2, offset=1)
    assert [item.id for item in page.items] == [item.id for item in result.items[1:3]]


def test_facet_counts_agree_with_search(indexed):
    total = len(indexed)
    unfiltered = indexed.facets()
    assert all(sum(counts.values()) == total for counts in unfiltered.values())
    attribute, value = next((a, v) for a, counts in unfiltered.items() for v, n in counts.items() if n > 0)
    filtered = indexed.facets({attribute: value})
    assert filtered[attribute] == unfiltered[attribute]  # a facet ignores its own filter: alternatives stay visible
    for other, counts in filtered.items():
        if other == attribute:
            continue
        assert sum(counts.values()) == unfiltered[attribute][value]
        for cls, count in counts.items():
            assert count == indexed.search({attribute: value, other: cls}, limit=0).total


def test_similar_puts_the_query_image_first(indexed):
    query = indexed.search(limit=1).items[0]
    results = indexed.similar(query.id, k=4)
    assert len(results) == 4
    assert results[0][0].id == query.id and results[0][1] == pytest.approx(1.0, abs=1e-4)
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)
    by_path = indexed.similar(query.path, k=1)
    assert by_path[0][0].id == query.id
    vector = indexed.embedding(query.id)
    assert vector is not None and indexed.similar(vector, k=1)[0][0].id == query.id
    assert len(indexed.similar(query.id, k=100)) == len(indexed)


def test_filters_accept_short_names_and_any_case_and_explain_mistakes(indexed):
    assert indexed.parse_filters(["sleeve_length=long sleeves", "collar_design_labels=Shirt Collar"]) == {
        "sleeve_length_labels": "Long Sleeves", "collar_design_labels": "Shirt Collar"}  # fmt: skip
    with pytest.raises(UserError, match=r"unknown attribute 'sleeve'.*sleeve_length_labels \(sleeve_length\)"):
        indexed.parse_filters(["sleeve=Long Sleeves"])
    with pytest.raises(UserError, match=r"has no class 'Longest'.*Extra Long Sleeves"):
        indexed.parse_filters(["sleeve_length=Longest"])
    with pytest.raises(UserError, match="attribute=value"):
        indexed.parse_filters(["sleeve_length"])
    with pytest.raises(UserError, match="filtered twice"):
        indexed.parse_filters(["sleeve_length=Sleeveless", "sleeve_length_labels=Cup Sleeves"])


def test_opening_a_missing_or_foreign_database_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such catalogue"):
        Catalog(tmp_path / "missing.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(UserError, match="not a catalogue"):
        Catalog(tmp_path / "junk.sqlite")


def test_command_line_index_search_and_similar(photos, trained_run, tmp_path, capsys, catalog_db, predictor,
                                               request):  # fmt: skip
    code = main(["catalog", "index", str(trained_run.run), str(photos), "--catalog", str(catalog_db),
                 "--workers", "0", "--batch-size", "4", "--device", "cpu"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1  # broken.jpg is listed, the rest indexed
    assert "9 added" in out and "broken.jpg" in err
    assert main(["catalog", "facets", "--catalog", str(catalog_db)]) == 0
    no_values = [line.split("\t")[2] for line in capsys.readouterr().out.strip().splitlines()]
    assert no_values == ["no value=9"] * len(FASHIONAI)  # the tests' two-step model finds no part shown

    # Browsing: a catalogue of the same photos whose tags apply (`ShownParts`), read through the command line.
    in_postgres = str(catalog_db).startswith("postgresql://")
    db = request.getfixturevalue("postgres").new_database() if in_postgres else str(tmp_path / "shown.sqlite")
    index_quietly(db, photos, trained_run.run, predictor)
    catalog = Catalog(db)
    attribute, value = next((a, v) for a, c in catalog.facets().items() for v, n in c.items() if n > 0)
    short = FASHIONAI.attribute(attribute).short_name
    assert main(["catalog", "search", "--catalog", str(db), "--where", f"{short}={value}", "--limit", "3"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert 1 <= len(lines) <= 3 and all(f"{attribute}={value}" in line for line in lines)  # input short, output full
    assert all(Path(line.split("\t")[0]).is_file() for line in lines)
    assert "matching" in err

    assert main(["catalog", "search", "--catalog", str(db), "--where", "sleeve=Long Sleeves"]) == 2
    assert "unknown attribute 'sleeve'" in capsys.readouterr().err

    assert main(["catalog", "facets", "--catalog", str(db), "--where", f"{short}={value}"]) == 0
    out, err = capsys.readouterr()
    rows = {
        name: (counts, no_value) for name, counts, no_value in (line.split("\t") for line in out.strip().splitlines())
    }
    assert list(rows) == FASHIONAI.names  # attributes are output by their one name
    counts = dict(pair.rsplit("=", 1) for pair in rows[attribute][0].split("  "))
    assert int(counts[value]) == catalog.facets()[attribute][value]  # its own filter does not narrow it
    assert rows[attribute][1] == f"no value={catalog.facet_counts({attribute: value}).no_value[attribute]}"
    assert f"{catalog.search({attribute: value}, limit=0).total} matching" in err

    indexed_file = sorted((photos / "pant_length").iterdir())[0]
    assert main(["catalog", "similar", "--catalog", str(db), str(indexed_file), "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    score, path, tags = lines[0].split("\t")
    assert Path(path) == indexed_file.resolve() and float(score) == pytest.approx(1.0, abs=1e-3)
    assert tags.split("  ")[0].startswith(f"{FASHIONAI.attributes[0].name}=")

    new_file = tmp_path / "outside.jpg"  # not in the catalogue: embedded with the catalogue's model
    shutil.copy(indexed_file, new_file)
    assert main(["catalog", "similar", "--catalog", str(db), str(new_file), "-k", "2", "--device", "cpu"]) == 0
    score, path, _ = capsys.readouterr().out.strip().splitlines()[0].split("\t")
    assert Path(path) == indexed_file.resolve() and float(score) == pytest.approx(1.0, abs=1e-3)


def test_photos_filed_under_a_category_get_only_its_attributes(photos, trained_run, predictor, tmp_path):
    """`--categories`: a skirt's photo gets a skirt length and nothing else, whatever the model decides."""
    files = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg") if p.name != "broken.jpg")
    skirt_photo, trouser_photo, unfiled = files[0], files[1], files[2]
    categories = tmp_path / "categories.csv"
    categories.write_text(f"path,category\n{skirt_photo},skirt\n{trouser_photo},trousers\n")
    db = tmp_path / "filed.sqlite"
    index_catalog(db, photos, trained_run.run, predictor=predictor, categories=categories, workers=0, progress=False)
    catalog = Catalog(db)
    items = {item.path: item for item in catalog.search({}, limit=100).items}
    catalog.close()
    assert [n for n, tag in items[skirt_photo].tags.items() if tag.applies] == ["skirt_length_labels"]
    assert [n for n, tag in items[trouser_photo].tags.items() if tag.applies] == ["pant_length_labels"]
    assert items[trouser_photo].tags["skirt_length_labels"].value is None
    unfiled_tags = items[unfiled].tags
    assert sum(tag.applies for tag in unfiled_tags.values()) > 2  # the model's own decision (full figures: all)
    other = tmp_path / "other.csv"
    other.write_text(f"path,category\n{skirt_photo},trousers\n")
    report = index_catalog(db, photos, trained_run.run, predictor=predictor, categories=other, workers=0,
                           progress=False)  # fmt: skip
    assert report.retagged_for_new_model and report.tagged == len(files)  # other categories: every photo again
    catalog = Catalog(db)
    [item] = [i for i in catalog.search({}, limit=100).items if i.path == skirt_photo]
    catalog.close()
    assert [n for n, tag in item.tags.items() if tag.applies] == ["pant_length_labels"]


def test_another_applicability_threshold_tags_the_catalogue_again(photos, trained_run, tmp_path):
    """Where a tag starts to apply decides what the catalogue holds: a new threshold re-tags every photo."""
    files = [p for p in photos.rglob("*.jpg") if p.name != "broken.jpg"]
    db = tmp_path / "thresholds.sqlite"

    def index(threshold: str) -> str:
        code = main(["catalog", "index", str(trained_run.run), str(photos), "--catalog", str(db), "--workers", "0",
                     "--device", "cpu", "--applicability-threshold", threshold])  # fmt: skip
        assert code == 1  # broken.jpg
        return threshold

    def shown() -> int:
        catalog = Catalog(db)
        try:
            return sum(tag.applies for item in catalog.search({}, limit=100).items for tag in item.tags.values())
        finally:
            catalog.close()

    index("0")
    everything = shown()
    assert everything > 0
    report = index_catalog(db, photos, trained_run.run, workers=0, progress=False)  # the default, 0.5
    assert report.retagged_for_new_model and report.tagged == len(files)
    assert shown() <= everything
    report = index_catalog(db, photos, trained_run.run, workers=0, progress=False)
    assert not report.retagged_for_new_model and report.unchanged == len(files)  # the same threshold: nothing to do


def test_an_unknown_category_is_refused_naming_its_line(photos, trained_run, predictor, tmp_path, capsys):
    categories = tmp_path / "categories.csv"
    categories.write_text("path,category\na.jpg,skirt\nb.jpg,hats\n")
    code = main(["catalog", "index", str(trained_run.run), str(photos), "--catalog", str(tmp_path / "c.sqlite"),
                 "--categories", str(categories), "--workers", "0"])  # fmt: skip
    assert code == 2
    assert f"{categories}:3: unknown category 'hats'" in capsys.readouterr().err
    assert not (tmp_path / "c.sqlite").exists()  # refused before the catalogue is made
