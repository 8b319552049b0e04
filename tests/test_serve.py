"""The HTTP service, run as a real `fashionattr serve` process on a loopback port and spoken to over HTTP.

Covers prediction (multipart and base64 JSON), schema and health, static files and catalogue images that cannot be
escaped with encoded `../`, the catalogue API, dynamic batching of concurrent requests, and hostile clients: every
client error a JSON 4xx (oversize, not an image, every file of the image corpus, decompression bombs that cost no
memory, bad or 100,000-deep JSON, absurd offsets and limits), and slow or greedy clients (partial headers, stalled
bodies, a byte-at-a-time slowloris, hundreds of idle connections) cut off while /healthz still answers.

Most tests share one server (conftest.py's `server`: a catalogue, a review queue, helpers.SERVER_OPTIONS); those
that need settings of their own (one-second deadlines, few open files, a PostgreSQL catalogue) start their own.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import math
import socket
import struct
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from corpus import png_declaring, write_image_corpus
from fashionattr.bench.service_process import ServiceProcess as Server
from fashionattr.bench.service_process import serve_in_child as start_server
from fashionattr.catalog import index_catalog
from fashionattr.inference import Predictor
from fashionattr.schema import FASHIONAI
from helpers import (
    DECODE_THREADS,
    UPLOAD_LIMIT_MB,
    TrainedRun,
    assert_no_traceback,
    catalogue_predictor,
    hide_skirt_length,
    make_photo_folder,
)

CONCURRENT_REQUESTS = 16
WAIT_CAP_S = 20.0
"""How long a test waits for the server to act: far beyond any deadline it is given, so only a hang fails."""


def raw_get(server: Server, path: str) -> tuple[int, bytes]:
    """GET a path exactly as written: HTTP clients would normalise `..` and re-encode `%` escapes."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def photo_bytes(trained_run: TrainedRun) -> list[tuple[str, bytes]]:
    files = sorted((trained_run.data / "Images" / "sleeve_length_labels").glob("*.jpg"))[:2]
    return [(f.name, f.read_bytes()) for f in files]


def healthy(server: Server) -> bool:
    return httpx.get(f"{server.url}/healthz", timeout=WAIT_CAP_S).status_code == 200


def assert_json_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert isinstance(message, str) and len(message) > 10
    return message


def assert_full_prediction(entry: dict) -> None:
    assert list(entry["attributes"]) == FASHIONAI.names
    for name, answer in entry["attributes"].items():
        classes = FASHIONAI.attribute(name).classes
        assert list(answer["probabilities"]) == list(classes)
        assert math.isclose(sum(answer["probabilities"].values()), 1.0, abs_tol=1e-4)
        # a value where the attribute applies to the photo, null where it does not; the head's answer either way
        assert answer["value"] == (classes[answer["index"]] if answer["applies"] else None)
        assert 0.0 <= answer["applicability"] <= 1.0
        assert answer["confidence"] == max(answer["probabilities"].values())
        assert answer["uncertain"] is False


# --- predicting -------------------------------------------------------------------------------------------------


def test_health_and_schema(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["attributes"] == len(FASHIONAI) and health["catalog_items"] == 9
    assert health["parts"] == {"model": {"status": "ok", "detail": None}, "catalog": {"status": "ok", "detail": None}}
    schema = client.get("/v1/schema").json()
    assert schema["attributes"] == {a.name: list(a.classes) for a in FASHIONAI}
    assert schema["models"][0]["backend"] == "torch"
    assert schema["catalog"] is True and schema["similar_uploads"] is True and schema["applicability_threshold"] == 0.5
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_predict_several_multipart_files(client, photo_bytes):
    files = [("files", (name, data, "image/jpeg")) for name, data in photo_bytes]
    response = client.post("/v1/predict", files=files)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["source"] for p in predictions] == [name for name, _ in photo_bytes]
    for entry in predictions:
        assert_full_prediction(entry)


def test_predict_base64_json_gives_the_same_answer(client, photo_bytes):
    name, data = photo_bytes[0]
    multipart = client.post("/v1/predict", files=[("files", (name, data, "image/jpeg"))]).json()["predictions"][0]
    response = client.post("/v1/predict", json={"images": [{"name": name, "data": base64.b64encode(data).decode()}]})
    assert response.status_code == 200, response.text
    [entry] = response.json()["predictions"]
    assert entry["source"] == name
    assert_full_prediction(entry)
    for attribute, answer in entry["attributes"].items():
        assert answer["value"] == multipart["attributes"][attribute]["value"]
        assert answer["confidence"] == pytest.approx(multipart["attributes"][attribute]["confidence"], abs=1e-5)


def test_concurrent_requests_share_batches(client, server, photo_bytes):
    before = client.get("/healthz").json()["batching"]
    name, data = photo_bytes[0]

    def one_request(_: int) -> int:
        response = httpx.post(f"{server.url}/v1/predict", files=[("files", (name, data, "image/jpeg"))], timeout=120)
        return response.status_code

    with ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS) as pool:
        statuses = list(pool.map(one_request, range(CONCURRENT_REQUESTS)))
    assert statuses == [200] * CONCURRENT_REQUESTS
    after = client.get("/healthz").json()["batching"]
    assert after["images"] - before["images"] == CONCURRENT_REQUESTS
    assert after["batches"] - before["batches"] < CONCURRENT_REQUESTS  # some requests shared a forward pass
    assert after["multi_image_batches"] > before["multi_image_batches"]
    assert 1 < after["largest_batch"] <= 8  # --max-batch holds


# --- client errors: JSON 4xx, and the server keeps serving --------------------------------------------------------


def test_an_upload_over_the_limit_is_413(client, photo_bytes):
    too_big = b"\xff" * (UPLOAD_LIMIT_MB * 1024 * 1024 + 4096)
    message = assert_json_error(client.post("/v1/predict", files=[("files", ("huge.jpg", too_big))]), 413)
    assert "upload limit" in message

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for _ in range(UPLOAD_LIMIT_MB * 4):
            yield b"x" * (512 * 1024)

    headers = {"content-type": "application/json"}
    assert_json_error(client.post("/v1/predict", content=chunks(), headers=headers), 413)
    name, data = photo_bytes[0]
    assert client.post("/v1/predict", files=[("files", (name, data))]).status_code == 200


def item_errors(response: httpx.Response) -> dict[str, str]:
    """File name -> error of every entry of a 200 batch answer that could not be predicted."""
    assert response.status_code == 200, response.text
    return {entry["source"]: entry["error"] for entry in response.json()["predictions"] if entry.get("error")}


def test_a_broken_file_in_a_batch_is_an_error_entry_and_the_others_are_answered(client, photo_bytes):
    name, data = photo_bytes[0]
    response = client.post("/v1/predict", files=[("files", (name, data)), ("files", ("notes.txt", b"just words"))])
    assert list(item_errors(response)) == ["notes.txt"]
    assert "not an image" in item_errors(response)["notes.txt"]
    good, bad = response.json()["predictions"]
    assert good["source"] == name and bad["source"] == "notes.txt"
    assert_full_prediction(good)
    assert bad["attributes"] is None
    assert client.get("/healthz").status_code == 200


def deep_json(depth: int, opening: bytes = b"[", closing: bytes = b"]") -> bytes:
    return b'{"images": ' + opening * depth + closing * depth + b"}"


JSON = "application/json"
BAD_REQUESTS = [
    ("not-json", "POST", "/v1/predict", b"{not json", JSON, 422, "not valid JSON"),
    ("no-images-list", "POST", "/v1/predict", b'{"pictures": []}', JSON, 422, "`images` list"),
    ("no-image", "POST", "/v1/predict", b'{"images": []}', JSON, 422, "no image"),
    ("text-plain", "POST", "/v1/predict", b"hello", "text/plain", 415, "unsupported content type"),
    ("json-nested-100000", "POST", "/v1/predict", deep_json(100_000), JSON, 422, "nests 100001 levels deep"),
    ("json-objects-nested-50000", "POST", "/v1/predict", b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, JSON, 422,
     "nests 50000 levels deep"),
    ("json-nested-just-over", "POST", "/v1/predict", deep_json(8), JSON, 422, "more than the 8 allowed"),
    ("json-brackets-in-strings-are-text", "POST", "/v1/predict", b'{"images": [{"name": "' + b"[" * 5000 + b'", '
     b'"data": "@@"}]}', JSON, 200, ""),
    ("offset-10-to-the-30", "GET", "/v1/catalog/search?offset=" + "1" + "0" * 30, None, None, 422, "offset"),
    ("offset-2-to-the-63", "GET", f"/v1/catalog/search?offset={2**63}", None, None, 422, "offset"),
    ("offset-negative", "GET", "/v1/catalog/search?offset=-1", None, None, 422, "offset"),
    ("offset-at-the-bound", "GET", "/v1/catalog/search?offset=1000000000", None, None, 200, ""),
    ("limit-10-to-the-30", "GET", "/v1/catalog/search?limit=" + "1" + "0" * 30, None, None, 422, "limit"),
    ("similar-k-huge", "GET", "/v1/catalog/similar/1?k=" + "9" * 40, None, None, 422, "k"),
    ("item-id-huge", "GET", "/v1/catalog/items/" + "9" * 40, None, None, 404, "numeric id"),
    ("confidence-nan", "GET", "/v1/catalog/facets?min_confidence=nan", None, None, 422, "min_confidence"),
    ("confidence-inf", "GET", "/v1/catalog/search?min_confidence=inf", None, None, 422, "min_confidence"),
]  # fmt: skip
"""Malformed and greedy requests (id, method, path, body, content type, status, words of the error): each gets a
JSON answer, never a hang or a 500; nesting is refused before it is parsed, numbers before they are used."""


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status", "words"),
                         [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS])  # fmt: skip
def test_malformed_and_greedy_requests_get_json_answers(server, client, method, path, body, content_type, status,
                                                        words):  # fmt: skip
    headers = {"content-type": content_type} if content_type else {}
    response = client.request(method, path, content=body, headers=headers)
    if status == 200:
        assert response.status_code == 200, response.text[:500]
    else:
        assert words in assert_json_error(response, status)
    assert healthy(server)


def test_head_healthz_answers_like_get(server):
    response = httpx.head(f"{server.url}/healthz", timeout=WAIT_CAP_S)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"].startswith("application/json")


def test_bad_base64_is_an_error_entry_of_its_image(client, photo_bytes):
    name, data = photo_bytes[0]
    images = [{"name": "a.jpg", "data": "@@@"}, {"name": name, "data": base64.b64encode(data).decode()}]
    response = client.post("/v1/predict", json={"images": images})
    assert "base64" in item_errors(response)["a.jpg"]
    assert_full_prediction(response.json()["predictions"][1])


def test_unknown_routes_and_methods_are_json_errors(client):
    assert_json_error(client.get("/v1/nothing-here"), 404)
    assert_json_error(client.get("/v1/predict"), 405)
    assert_json_error(client.get("/v1/catalog/similar/1", params={"k": "many"}), 422)


# --- the web page and its files --------------------------------------------------------------------------------


def test_the_page_and_its_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/predict.js" in page.text and "//cdn" not in page.text
    for name in ("app.css", "common.js", "predict.js", "catalog.js"):
        assert client.get(f"/static/{name}").status_code == 200
    assert "/static/catalog.js" in client.get("/catalog").text


TRAVERSALS = [
    "/static/..%2f..%2fpyproject.toml",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/%2e%2e/pyproject.toml",
    "/static/%252e%252e%252fpyproject.toml",
    "/static/..%252f..%252fpyproject.toml",
    "/static/../../pyproject.toml",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/static/../app.css/../../../pyproject.toml",
    "/v1/catalog/image/..%2f..%2fpyproject.toml",
    "/v1/catalog/image/%252e%252e%252fpyproject.toml",
    "/v1/catalog/image/%2fetc%2fpasswd",
    "/v1/catalog/image//etc/passwd",
    "/v1/catalog/image/1%2f..%2f..%2fcatalog.sqlite",
    "/v1/catalog/image/-1",
    "/v1/catalog/image/99999",
    "/static/..%5c..%5cpyproject.toml",
    "/static/..\\..\\pyproject.toml",
    "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/static/%252e%252e%252f%252e%252e%252fpyproject.toml",
    "/static/..%c0%af..%c0%afpyproject.toml",
    "/static/....//....//pyproject.toml",
    "/static/app.css%00../../pyproject.toml",
    "/v1/catalog/image/1/../../catalog.sqlite",
    "/v1/catalog/image/1%252f..%252f..%252fcatalog.sqlite",
    "/v1/catalog/image/%2e%2e",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_file_outside_the_static_folder_or_the_catalogue_is_reachable(server, path):
    status, body = raw_get(server, path)
    assert status == 404, (path, body[:200])
    assert b"[project]" not in body and b"root:" not in body and b"SQLite" not in body
    assert b'"error"' in body


# --- the catalogue API -----------------------------------------------------------------------------------------


def test_catalogue_facets_search_similar_and_images(client):
    info = client.get("/v1/catalog").json()
    assert info["items"] == 9 and info["errors"] == 1
    facets = client.get("/v1/catalog/facets").json()
    assert facets["total"] == 9
    attribute, value = next((a, v) for a, counts in facets["facets"].items() for v, n in counts.items() if n > 0)
    short = attribute.removesuffix("_labels")
    found = client.get("/v1/catalog/search", params={"filter": f"{short}={value}", "limit": 100}).json()
    assert found["filters"] == {attribute: value}
    assert found["total"] == facets["facets"][attribute][value] == len(found["items"])
    assert all(item["tags"][attribute]["value"] == value for item in found["items"])

    first = found["items"][0]
    image = client.get(first["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(image.content)) as decoded:
        assert decoded.size[0] > 0
    similar = client.get(f"/v1/catalog/similar/{first['id']}", params={"k": 3}).json()
    assert similar["query"]["id"] == first["id"]
    assert similar["results"][0]["id"] == first["id"]
    assert similar["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert len(similar["results"]) == 3
    detail = client.get(f"/v1/catalog/items/{first['id']}").json()
    assert list(detail["tags"][attribute]["probabilities"]) == list(FASHIONAI.attribute(attribute).classes)


def test_catalogue_search_by_uploaded_photo(client, trained_run):
    indexed = sorted((trained_run.data / "Images" / "pant_length_labels").glob("*.jpg"))[0]
    upload = [("files", (indexed.name, indexed.read_bytes()))]
    response = client.post("/v1/catalog/similar", params={"k": 2}, files=upload)
    assert response.status_code == 200, response.text
    best = response.json()["results"][0]
    assert best["path"] == f"pant_length/{indexed.name}" and best["similarity"] == pytest.approx(1.0, abs=1e-3)


def test_catalogue_filter_mistakes_are_422_listing_the_valid_names(client):
    message = assert_json_error(client.get("/v1/catalog/search", params={"filter": "sleeve=Long Sleeves"}), 422)
    assert "sleeve_length_labels" in message
    message = assert_json_error(client.get("/v1/catalog/facets", params={"filter": "sleeve_length=Longest"}), 422)
    assert "Extra Long Sleeves" in message
    assert_json_error(client.get("/v1/catalog/items/abc"), 404)


def test_create_app_without_a_catalogue_in_process(trained_run, photo_bytes):
    """The app object on its own (no server process): catalogue routes say how to get one; predict works."""
    from fastapi.testclient import TestClient

    from fashionattr.serve import ServeSettings, create_app

    predictor = Predictor.from_path(trained_run.run, device="cpu", applicability_threshold=0.0)
    app = create_app(predictor, None, ServeSettings(max_batch=4))
    with TestClient(app) as local:
        assert "--catalog" in assert_json_error(local.get("/v1/catalog/facets"), 404)
        schema = local.get("/v1/schema").json()
        assert schema["catalog"] is False and schema["applicability_threshold"] == 0.0
        name, data = photo_bytes[0]
        response = local.post("/v1/predict", files=[("files", (name, data))])
        assert response.status_code == 200 and len(response.json()["predictions"]) == 1
        [entry] = response.json()["predictions"]
        for attribute, answer in entry["attributes"].items():  # threshold 0: a tag wherever the top class is a value
            top = FASHIONAI.attribute(attribute).classes[answer["index"]]
            assert answer["applies"] == (top != "Invisible"), attribute


def test_bad_serve_options_are_user_errors(trained_run, capsys):
    """Numbers out of range (--max-batch 0, --header-timeout nan ...) are in tests/test_settings.py."""
    from fashionattr.cli import main

    assert main(["serve", str(trained_run.run), "--catalog", "/nonexistent/catalog.sqlite"]) == 2
    assert "no such catalogue" in capsys.readouterr().err


# --- the bad-input corpus, memory under bombs, the default address ----------------------------------------------


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


@pytest.fixture(scope="module")
def corpus_uploads(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes, object]]:
    """(name, bytes, case) of every plain file of the bad-input corpus (tests/corpus.py)."""
    folder = tmp_path_factory.mktemp("serve-corpus")
    cases = write_image_corpus(folder)
    return [
        (name, (folder / name).read_bytes(), case) for name, case in cases.items() if not (folder / name).is_symlink()
    ]


def test_every_corpus_file_is_answered_or_refused_by_name(client, server, corpus_uploads):
    """Each file alone, then all in one request; a decompression bomb among them is refused by name from its header,
    and the server stays up."""
    for name, data, case in corpus_uploads:
        response = client.post("/v1/predict", files=[("files", (name, data, "image/jpeg"))])
        if case.good:
            assert item_errors(response) == {}, name
            assert len(response.json()["predictions"][0]["attributes"]) == len(FASHIONAI)
        else:
            message = item_errors(response)[name]
            assert name in message and case.reason in message, (name, message)
    everything = client.post("/v1/predict", files=[("files", (n, d, "image/jpeg")) for n, d, _ in corpus_uploads])
    assert set(item_errors(everything)) == {name for name, _, case in corpus_uploads if not case.good}
    assert len(everything.json()["predictions"]) == len(corpus_uploads)
    assert server.process.poll() is None and client.get("/healthz").status_code == 200


def test_a_file_name_that_is_not_utf8_is_served(client, photo_bytes):
    _, data = photo_bytes[0]
    boundary = "fashionattr-test-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="caf\xe9.jpg"\r\n'
    body = head.encode("latin-1") + b"Content-Type: image/jpeg\r\n\r\n" + data + f"\r\n--{boundary}--\r\n".encode()
    response = client.post("/v1/predict", content=body,
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["source"].startswith("caf")


def test_decompression_bombs_cost_no_memory(client, server):
    """Header bombs (40000 x 40000 declared in 100 bytes) are refused before a pixel is decoded."""
    before = memory_mib(server.process.pid)
    bombs = [("files", (f"bomb-{n}.png", png_declaring(40_000, 40_000), "image/png")) for n in range(32)]
    for _ in range(5):
        errors = item_errors(client.post("/v1/predict", files=bombs))
        assert len(errors) == 32 and all("decompression bomb" in e for e in errors.values())
    after = memory_mib(server.process.pid)
    print(f"server memory around 160 header bombs: {before['VmRSS']:.0f} -> {after['VmRSS']:.0f} MiB")
    assert after["VmHWM"] - before["VmRSS"] < 200
    assert client.get("/healthz").status_code == 200


def plain_png(side: int) -> bytes:
    """A real, valid `side` x `side` grey PNG: it compresses about 1000:1, so 36 megapixels take ~110 KB."""
    row = b"\0" + b"\x80" * (3 * side)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.mark.slow
def test_many_large_images_in_one_request_are_decoded_a_few_at_a_time(client, server):
    """Eight 36-megapixel PNGs (108 MB each decoded, 0.9 MB sent) are valid images, and are answered; but only
    --decode-threads of them are ever held at full size, so memory grows by about two, not eight, of them."""
    image = plain_png(6000)
    files = [("files", (f"large-{n}.png", image, "image/png")) for n in range(8)]
    assert len(image) * len(files) < UPLOAD_LIMIT_MB * 1024 * 1024
    before = memory_mib(server.process.pid)
    response = client.post("/v1/predict", files=files, timeout=300)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 8
    growth = memory_mib(server.process.pid)["VmHWM"] - before["VmRSS"]
    print(f"server memory growth for 8 x 36-megapixel PNGs, {DECODE_THREADS} decode threads: {growth:.0f} MiB")
    assert growth < 8 * 108  # holding all eight at once would take 864 MiB before any copy


def test_the_default_address_is_loopback():
    from fashionattr.cli import build_parser

    assert build_parser().parse_args(["serve", "run"]).host == "127.0.0.1"


@pytest.mark.parametrize(
    ("where", "words"),
    [("in use", "another process listens there"), ("foreign address", "this machine has no such address")],
)
def test_an_address_it_cannot_listen_on_is_one_line_before_the_model_loads(tmp_path, capsys, where, words) -> None:
    """The checkpoint does not even exist: the address is refused first, not after minutes of loading."""
    from fashionattr.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        host, port = ("127.0.0.1", taken.getsockname()[1]) if where == "in use" else ("192.0.2.1", 8000)
        assert main(["serve", str(tmp_path / "no-run"), "--host", host, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert words in err and f"{host} port {port}" in err and "Traceback" not in err, err


# --- slow clients, and many idle ones ---------------------------------------------------------------------------
# Against servers of their own: one with one-second deadlines, and one allowed only 256 open files, as a default
# `ulimit -n 1024` server is allowed a few more.

HEADER_TIMEOUT_S = 1


@pytest.fixture(scope="module")
def guarded_server(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: one-second deadlines for headers and for each pause in a body."""
    workdir = tmp_path_factory.mktemp("guarded")
    with start_server(trained_run.run, workdir / "server.log", "--header-timeout", str(HEADER_TIMEOUT_S),
                      "--body-timeout", str(HEADER_TIMEOUT_S)) as server:  # fmt: skip
        yield server


def until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout fails the test)."""
    connection.settimeout(WAIT_CAP_S)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


SLOW_CLIENTS = [
    ("partial-headers", [b"GET /healthz HTTP/1.1\r\nHost: x\r\n"], b"HTTP/1.1 408"),
    ("partial-request-line", [b"GET /heal"], b"HTTP/1.1 408"),
    ("connects-and-says-nothing", [], b""),
    ("stalled-json-body", [b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 1000\r\n\r\n{\"images\": ["], b"HTTP/1.1 408"),
    ("stalled-multipart-body", [b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                                b"boundary=b\r\nContent-Length: 5000\r\n\r\n--b\r\nContent-Disposition: form-data; "
                                b'name="files"; filename="a.jpg"\r\n\r\n\xff\xd8'], b"HTTP/1.1 408"),
    ("partial-second-request-after-keep-alive", [b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /healthz HTT"],
     b"HTTP/1.1 408"),
]  # fmt: skip


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("parts", "ends_with"), [case[1:] for case in SLOW_CLIENTS],
                         ids=[case[0] for case in SLOW_CLIENTS])  # fmt: skip
def test_a_slow_client_is_cut_off_while_healthz_answers(guarded_server, parts, ends_with):
    with socket.create_connection(("127.0.0.1", guarded_server.port), timeout=WAIT_CAP_S) as connection:
        for part in parts:
            connection.sendall(part)
            time.sleep(0.05)
        assert healthy(guarded_server)  # while the slow client holds its connection
        received = until_closed(connection)
    if ends_with:
        last = received[received.rfind(b"HTTP/1.1 ") :]
        assert last.startswith(ends_with), received
        assert b'{"error": "the request' in last  # the service's JSON error
    else:
        assert received == b""
    assert healthy(guarded_server)
    assert_no_traceback(guarded_server.log.read_text())  # a dropped request is no server error


@pytest.mark.timeout(120)
def test_headers_trickled_a_byte_at_a_time_are_cut_off_at_the_deadline(guarded_server):
    """A slowloris keeps every pause short; the deadline counts from the first byte, so it still ends."""
    request = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-Slow-%d: %d\r\n" % (n, n) for n in range(500))
    deadline = time.monotonic() + WAIT_CAP_S
    with socket.create_connection(("127.0.0.1", guarded_server.port), timeout=WAIT_CAP_S) as connection:
        connection.setblocking(False)
        answer = b""
        for byte in request:
            assert time.monotonic() < deadline, "the server kept a trickling client for 20 s"
            try:
                connection.send(bytes([byte]))
                answer += connection.recv(4096)
                break  # the server spoke: it answered 408 and closed
            except BlockingIOError:
                time.sleep(0.1)
            except OSError:  # reset: it closed
                break
        assert not answer or answer.startswith(b"HTTP/1.1 408")
    assert healthy(guarded_server)


def start_server_with_few_files(checkpoint: Path, log: Path, open_files: int) -> contextlib.AbstractContextManager:
    """`start_server`, but the server process may hold only `open_files` descriptors (soft and hard limit)."""
    limit = f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({open_files}, {open_files}))"
    launcher = (f"{limit}; import runpy, sys; sys.argv = ['fashionattr', *sys.argv[1:]]; "
                "runpy.run_module('fashionattr', run_name='__main__')")  # fmt: skip
    return start_server(checkpoint, log, launcher=[sys.executable, "-c", launcher])


@pytest.mark.timeout(180)
def test_many_idle_connections_do_not_starve_healthz(trained_run: TrainedRun, tmp_path):
    """400 silent sockets against a server allowed 256 files: before the cap, /healthz waited for ever."""
    with start_server_with_few_files(trained_run.run, tmp_path / "server.log", 256) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_CAP_S) for _ in range(400)]
        try:
            assert healthy(server)  # within 20 s: the default header deadline (10 s) has not closed them for it
            closed = 0
            for connection in idle:
                connection.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    closed += connection.recv(1) == b""
            assert 400 - closed <= 256  # the longest idle ones were closed to make room
            assert "connections, as the process may open only so many files" in server.log.read_text()
        finally:
            for connection in idle:
                connection.close()


# --- a dependency that is down ------------------------------------------------------------------------------------


def test_a_catalogue_database_that_is_down_is_503_and_predicting_goes_on(trained_run, postgres, tmp_path, photo_bytes):
    """The catalogue's PostgreSQL refuses connections: its routes say so with 503 and a retry hint (never a 4xx
    blaming the client), /healthz reports the catalogue down and the service degraded but alive (200), predicting
    still works, and once the database is back the catalogue answers again."""
    import psycopg

    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    url = postgres.new_database()
    index_catalog(url, photos, trained_run.run, predictor=catalogue_predictor(trained_run.run),
                  batch_size=4, workers=0, progress=False)  # fmt: skip
    database = url.split("@/", 1)[1].split("?")[0]
    admin_url = postgres.url()

    def allow_connections(allowed: bool) -> None:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [database])

    with start_server(trained_run.run, tmp_path / "server.log", "--catalog", url) as server:
        client = httpx.Client(base_url=server.url, timeout=60)
        assert client.get("/v1/catalog/facets").status_code == 200
        allow_connections(False)
        try:
            for path in ("/v1/catalog", "/v1/catalog/facets", "/v1/catalog/search", "/v1/catalog/similar/1"):
                response = client.get(path)
                assert response.status_code == 503, (path, response.text)
                assert int(response.headers["retry-after"]) > 0 and "PostgreSQL" in response.json()["error"]
            health = client.get("/healthz")
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "degraded" and health.json()["parts"]["catalog"]["status"] == "down"
            name, data = photo_bytes[0]
            assert item_errors(client.post("/v1/predict", files=[("files", (name, data))])) == {}
        finally:
            allow_connections(True)
        assert client.get("/v1/catalog/facets").status_code == 200
        assert client.get("/healthz").json()["status"] == "ok"


def test_a_model_worker_that_stopped_is_503_and_healthz_says_down(trained_run, photo_bytes, monkeypatch):
    from fastapi.testclient import TestClient

    from fashionattr.serve import ServeSettings, create_app
    from fashionattr.serve.batching import DynamicBatcher

    async def stops_at_once(self: DynamicBatcher) -> None:
        return None

    monkeypatch.setattr(DynamicBatcher, "_run", stops_at_once)
    app = create_app(Predictor.from_path(trained_run.run, device="cpu"), None, ServeSettings(max_batch=4))
    with TestClient(app) as local:
        name, data = photo_bytes[0]
        response = local.post("/v1/predict", files=[("files", (name, data))])
        assert "worker is not running" in assert_json_error(response, 503)
        assert int(response.headers["retry-after"]) > 0
        health = local.get("/healthz")
        assert health.status_code == 503 and health.json()["parts"]["model"]["status"] == "down"
        assert local.get("/v1/schema").status_code == 200  # what does not need the model still answers


def test_an_attribute_that_does_not_apply_is_answered_with_value_null(trained_run, photo_bytes, monkeypatch):

    from fastapi.testclient import TestClient

    from fashionattr.serve import ServeSettings, create_app

    hide_skirt_length(monkeypatch)
    app = create_app(Predictor.from_path(trained_run.run, device="cpu"), None, ServeSettings(max_batch=4))
    with TestClient(app) as local:
        name, data = photo_bytes[0]
        [entry] = local.post("/v1/predict", files=[("files", (name, data))]).json()["predictions"]
    skirt = entry["attributes"]["skirt_length_labels"]
    assert skirt["value"] is None and skirt["applies"] is False and skirt["applicability"] == 0.03
    assert skirt["uncertain"] is False and len(skirt["probabilities"]) == 6  # the head's answer is still there
    coat = entry["attributes"]["coat_length_labels"]
    assert coat["value"] == (FASHIONAI.attribute("coat_length_labels").classes[coat["index"]] if coat["applies"]
                             else None)  # fmt: skip
