"""Readers: every layout a researcher hands over, and every bad-input case."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from w2s.data.readers import DataError, Example, parse_label, read_examples


def write(tmp_path, name, content, mode="w"):
    path = tmp_path / name
    if mode == "wb":
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


EXPECTED = [Example("a fine film", 1), Example("dull , dull", 0)]


@pytest.mark.parametrize("name, content", [
    ("d.jsonl", '{"sentence": "a fine film", "label": 1}\n{"sentence": "dull , dull", "label": 0}\n'),
    ("d.jsonl", '{"text": "a fine film", "label": "1"}\r\n\r\n{"text": "dull , dull", "label": 0}'),
    ("d.json", '[\n {"sentence": "a fine film", "label": 1},\n {"sentence": "dull , dull", "label": 0}\n]'),
    ("d.tsv", "sentence\tlabel\na fine film\t1\ndull , dull\t0\n"),
    ("d.tsv", "sentence \t label\r\na fine film \t 1 \r\ndull , dull\t0  \r\n"),  # padded, CRLF
    ("d.tsv", 'sentence\tlabel\n"a fine film"\t"1"\ndull , dull\t0\n'),  # quoted fields
    ("d.tsv", "a fine film\t1\ndull , dull\t0\n"),  # no header
    ("d.tsv", "1\ta fine film\n0\tdull , dull\n"),  # no header, label first
    ("d.csv", 'sentence,label\n"a fine film",1\n"dull , dull", 0\n'),
    ("d.csv", 'label,text,extra\n1,a fine film,x\n0,"dull , dull",y\n'),
    ("d.csv", 'a fine film,1\n"dull , dull",0\n'),  # no header
    ("d.txt", "sentence\tlabel\na fine film\t1\ndull , dull\t0\n"),  # sniffed TSV
    ("d.data", '[{"sentence": "a fine film", "label": 1}, {"sentence": "dull , dull", "label": 0}]'),
])
def test_layouts(tmp_path, name, content):
    assert read_examples(write(tmp_path, name, content)) == EXPECTED


def test_bom_and_literal_quotes_and_backslashes(tmp_path):
    content = '\ufeffsentence\tlabel\nthey said "wow" \\ ok\t1\n'
    assert read_examples(write(tmp_path, "q.tsv", content)) == [Example('they said "wow" \\ ok', 1)]


def test_long_lines(tmp_path):
    long = "word " * 50_000
    rows = read_examples(write(tmp_path, "l.csv", f'text,label\n"{long}",1\n'))
    assert rows[0].text == long.strip()


def test_configurable_columns(tmp_path):
    path = write(tmp_path, "c.jsonl", '{"review": "good", "y": 1, "label": 9}\n')
    assert read_examples(path, text_column="review", label_column="y") == [Example("good", 1)]
    path = write(tmp_path, "c.tsv", "x\tgood\t1\n")
    assert read_examples(path, text_column=1, label_column=2) == [Example("good", 1)]


def test_bundled_files_read(tmp_path):
    from w2s.data.registry import data_root
    files = sorted(p for p in data_root().rglob("*") if p.is_file())
    assert len(files) == 10
    for path in files:
        assert read_examples(path)


BAD = [
    ("empty.jsonl", "", None, "empty file"),
    ("blank.tsv", "\n\n", None, "empty file"),
    ("header_only.tsv", "sentence\tlabel\n", None, "empty file"),
    ("bad.jsonl", '{"sentence": "ok", "label": 1}\n{"sentence": "oops"\n', 2, "invalid JSON"),
    ("notobj.jsonl", '{"sentence": "ok", "label": 1}\n[1, 2]\n', 2, "expected a JSON object"),
    ("nocol.jsonl", '{"review": "ok", "label": 1}\n', 1, "missing text column"),
    ("nolabel.tsv", "sentence\tstars\nok\t1\n", 1, "missing label column"),
    ("nonint.tsv", "sentence\tlabel\nok\t1\nbad\tpositive\n", 3, "is not an integer"),
    ("float.jsonl", '{"sentence": "ok", "label": 0.5}\n', 1, "is not an integer"),
    ("bool.jsonl", '{"sentence": "ok", "label": true}\n', 1, "is not an integer"),
    ("neg.csv", "sentence,label\nok,-1\n", 2, "out of range"),
    ("ragged.tsv", "sentence\tlabel\nok\t1\ntoo\tmany\t1\n", 3, "ragged row"),
    ("short.tsv", "sentence\tlabel\nok\t1\nmissing\n", 3, "ragged row"),
    ("emptytext.tsv", "sentence\tlabel\n  \t1\n", 2, "empty text"),
    ("textnum.jsonl", '{"sentence": 5, "label": 1}\n', 1, "not a string"),
    ("arr.json", '[{"sentence": "ok", "label": 1},\n {"sentence": "x"}]', 2, "missing label column"),
    ("arr2.json", '[{"sentence": "ok", "label": 1}\n {"sentence": "x", "label": 0}]', 2, "expected ','"),
    ("arr3.json", '[{"sentence": "ok", "label": 1},\n {"sentence": oops}]', 2, "invalid JSON"),
    ("arr4.json", '[{"sentence": "ok", "label": 1}] [', 1, "extra data"),
    ("arr5.json", '[1]', 1, "expected a JSON object"),
    ("quote.csv", 'sentence,label\n"unterminated,1\n', 2, "malformed CSV"),
    ("onecol.tsv", "just text\n", 1, "at least 2 fields"),
]


@pytest.mark.parametrize("name, content, line, problem", BAD)
def test_bad_input_names_file_line_problem(tmp_path, name, content, line, problem):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        read_examples(path)
    err = info.value
    assert err.path == str(path) and err.line == line and problem in err.problem
    assert str(err).startswith(f"{path}:{line}: " if line else f"{path}: ")


def test_out_of_range_with_num_labels(tmp_path):
    path = write(tmp_path, "r.tsv", "sentence\tlabel\nok\t1\nhigh\t4\n")
    with pytest.raises(DataError, match=r"r.tsv:3: label 4 out of range \[0, 4\)"):
        read_examples(path, num_labels=4)


def test_undecodable_bytes_line(tmp_path):
    path = write(tmp_path, "u.tsv", b"sentence\tlabel\nok\t1\nbad \xff\xfe\t0\n", mode="wb")
    with pytest.raises(DataError, match=r"u.tsv:3: undecodable bytes"):
        read_examples(path)


def test_missing_path_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_examples(tmp_path / "absent.jsonl")
    with pytest.raises(DataError, match="unknown format"):
        read_examples(write(tmp_path, "a.tsv", "a\t1\n"), fmt="xml")


def test_headerless_file_rejects_column_names(tmp_path):
    with pytest.raises(DataError, match="must be an index"):
        read_examples(write(tmp_path, "h.tsv", "good\t1\n"), text_column="review")


@pytest.mark.parametrize("value, expected", [(1, 1), (" 2 ", 2), ("3\r", 3), (1.0, 1), ("+4", 4),
                                             ("1.5", None), (True, None), (None, None), ("", None)])
def test_parse_label(value, expected):
    assert parse_label(value) == expected


# --- property: any examples written in any layout read back unchanged ----------------------

texts = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=60) \
    .map(str.strip).filter(bool)
examples = st.lists(st.builds(Example, texts, st.integers(0, 9)), min_size=1, max_size=20)


def _csv_field(text):
    return '"' + text.replace('"', '""') + '"'


@settings(max_examples=60, deadline=None)
@given(rows=examples, layout=st.sampled_from(["jsonl", "json", "csv", "tsv"]))
def test_roundtrip(tmp_path_factory, rows, layout):
    if layout == "tsv":
        rows = [Example(r.text.replace("\t", " "), r.label) for r in rows]
        rows = [Example(" ".join(r.text.split()) or "x", r.label) for r in rows]
        rows = [r if not (r.text.startswith('"') and r.text.endswith('"')) else Example(r.text + ".", r.label)
                for r in rows]
    body = {
        "jsonl": "\n".join(json.dumps({"sentence": r.text, "label": r.label}) for r in rows),
        "json": json.dumps([{"text": r.text, "label": r.label} for r in rows], indent=1),
        "csv": "sentence,label\n" + "\n".join(f"{_csv_field(r.text)},{r.label}" for r in rows),
        "tsv": "sentence\tlabel\n" + "\n".join(f"{r.text}\t{r.label}" for r in rows),
    }[layout]
    path = tmp_path_factory.mktemp("rt") / f"data.{layout}"
    path.write_text(body, encoding="utf-8", newline="")
    assert read_examples(path) == rows
