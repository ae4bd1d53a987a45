"""Request bodies from JSONL/CSV datasets per protocol, and the prediction extractor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshlab.errors import ConfigError
from meshlab.load.payloads import build_bodies, make_extractor, read_rows

from .conftest import FEATURES_CSV, FEATURES_JSONL, TEMPLATE


def test_jsonl_and_csv_give_the_same_v2_tensors() -> None:
    from_jsonl = build_bodies(read_rows(FEATURES_JSONL), "v2", model="fraud", input_name="x")
    from_csv = build_bodies(read_rows(FEATURES_CSV), "v2", model="fraud", input_name="x")
    assert from_jsonl == from_csv
    body = json.loads(from_jsonl[0])
    tensor = body["inputs"][0]
    assert (tensor["name"], tensor["shape"], tensor["datatype"]) == ("x", [1, 4], "FP64")
    assert tensor["data"] == json.loads(FEATURES_JSONL.read_text().splitlines()[0])


def test_v1_wraps_rows_and_passes_full_bodies_through(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('[1, 2]\n{"instances": [[3, 4]]}\n\n')
    bodies = [json.loads(b) for b in build_bodies(read_rows(data), "v1")]
    assert bodies == [{"instances": [[1, 2]]}, {"instances": [[3, 4]]}]
    v2 = json.loads(build_bodies([[1, 2]], "v2")[0])
    assert v2["inputs"][0]["datatype"] == "INT64"


def test_json_template_renders_strictly() -> None:
    template = json.loads(TEMPLATE.read_text())
    body = json.loads(build_bodies(read_rows(FEATURES_CSV)[:1], "json", template=template)[0])
    first = read_rows(FEATURES_CSV)[0]
    assert body == {
        "features": list(first.values()),
        "meta": {"first": first["f0"], "source": "meshlab"},
    }
    with pytest.raises(ConfigError, match="asks for 'f0'"):
        build_bodies([[1, 2]], "json", template=template)


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("bad.jsonl", "[1]\n{oops\n", "bad.jsonl:2: not a JSON value"),
        ("bad.csv", "a,b\n1,2\n3\n", "bad.csv:3: expected 2 values"),
        ("empty.jsonl", "\n", "has no rows"),
        ("rows.txt", "[1]\n", "must end in .jsonl or .csv"),
    ],
)
def test_bad_datasets_name_file_and_line(tmp_path: Path, name: str, text: str, words: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        read_rows(path)


def test_v2_rejects_non_numeric_features() -> None:
    with pytest.raises(ConfigError, match="must be numbers"):
        build_bodies([["a", 1]], "v2")


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("outputs[0].data[0]", {"outputs": [{"data": [0.25, 1]}]}, "0.25"),
        ("predictions[0]", {"predictions": [[1, 0]]}, "[1,0]"),
        ("predictions[3]", {"predictions": [1]}, ""),
        ("label", {"label": "fraud"}, '"fraud"'),
        ("", {"a": 1}, '{"a":1}'),
        ("a.b", {"a": [1]}, ""),
    ],
)
def test_extractor(path: str, body: object, expected: str) -> None:
    assert make_extractor(path)(json.dumps(body).encode()) == expected


def test_extractor_tolerates_non_json_bodies() -> None:
    assert make_extractor("a")(b"<html>") == ""
    assert make_extractor("a")(b"") == ""


def test_extractor_cache_gives_the_same_answers_and_stays_bounded() -> None:
    extract = make_extractor("predictions[0]", cache_size=3)
    bodies = [json.dumps({"predictions": [i]}).encode() for i in range(10)]
    for _ in range(2):  # second pass: a mix of hits and refills after the cache emptied
        assert [extract(b) for b in bodies] == [str(i) for i in range(10)]
    assert extract(b"not json") == "" and extract(b"not json") == ""
    uncached = make_extractor("predictions[0]", cache_size=0)
    assert [uncached(b) for b in bodies] == [str(i) for i in range(10)]
