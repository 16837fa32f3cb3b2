"""Fuzz the manifest readers: whatever the bytes, only ManifestUnreadable escapes, and every Entry is sound."""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
import typing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.registration.entries import MAX_TITLE_CHARS, MAX_URL_BYTES
from corral.registration.manifest import (
    DataType,
    Entry,
    EntryError,
    ManifestFlags,
    ManifestUnreadable,
    detect_format,
    iter_entries,
    read_flags,
)
from corral.registration.manifest_csv import COLUMNS
from corral.registration.manifest_json import DATA_ITEMS_KEYS, TOP_KEYS

DATA_TYPES = set(typing.get_args(DataType))
GROUP_TYPES = {"image_group", "image_sequence", "dicom_series"}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(path: Path, fmt: str) -> tuple[list[Entry | EntryError], str | None]:
    """Run both passes; assert the contract and every invariant; return what was yielded and the error."""
    assert fmt in ("json", "csv")
    flags_error = entries_error = None
    try:
        flags = read_flags(path, fmt)  # type: ignore[arg-type]
        assert isinstance(flags, ManifestFlags)
        assert isinstance(flags.skip_duplicate_urls, bool) and isinstance(flags.upsert_metadata, bool)
    except ManifestUnreadable as exc:
        flags_error = exc.message
    results: list[Entry | EntryError] = []
    try:
        for item in iter_entries(path, fmt):  # type: ignore[arg-type]
            results.append(item)
    except ManifestUnreadable as exc:
        entries_error = exc.message
    # read_flags finds every whole-file problem iter_entries would meet, with the same words
    assert flags_error == entries_error
    for index, item in enumerate(results):
        assert type(item) in (Entry, EntryError)
        assert item.seq == index  # dense, strictly increasing, bad entries included
        assert isinstance(item.where, str) and item.where
        if isinstance(item, EntryError):
            assert isinstance(item.message, str) and item.message
            assert item.url is None or isinstance(item.url, str)
            continue
        assert item.data_type in DATA_TYPES
        assert item.urls and all(isinstance(u, str) for u in item.urls)
        if item.data_type not in GROUP_TYPES:
            assert len(item.urls) == 1
        for url in item.urls:
            assert url and not any(c.isspace() for c in url)
            assert len(url.encode("utf-8", "surrogatepass")) <= MAX_URL_BYTES
        assert isinstance(item.title, str) and 0 < len(item.title) <= MAX_TITLE_CHARS
        assert isinstance(item.client_metadata, dict) and isinstance(item.media, dict)
        if "frames" in item.media:
            assert len(item.media["frames"]) == len(item.urls)
        assert item.frame_info == () or len(item.frame_info) == len(item.urls)
        json.dumps(asdict(item), allow_nan=False)  # what the job pipeline stores
    return results, entries_error


# -- JSON -------------------------------------------------------------------------------------


def reference_json(path: Path) -> tuple[list[Entry | EntryError], str | None]:
    """What the event parser alone yields (the fast reader must agree with it exactly)."""
    from corral.registration import manifest, manifest_json

    results: list[Entry | EntryError] = []
    try:
        walker = manifest_json._Walker(build=True)
        for item in manifest._storable(walker.document(manifest_json._events(path))):
            results.append(item)
    except ManifestUnreadable as exc:
        return results, exc.message
    return results, None


URLS = st.one_of(
    st.sampled_from(["s3://b/a.mp4", "gs://b/x.jpg", "https://h/a%20b.png?x=1", "/abs/p.wav", "file:///f.pdf",
                     "s3://b/dir/", "relative/key", "", " ", "s3://b/a b", "https://", "s3://b/\u00e9.jpg"]),
    # long ones: built lazily, so hypothesis never prints a 16 KB repr
    st.sampled_from([("x", 16_377), ("x", 16_378), ("\u00e9", 8188), ("\u00e9", 8189), ("n", 300), ("n", 301)])
    .map(lambda spec: "s3://b/" + spec[0] * spec[1]),
    st.text(max_size=40),
    st.builds(lambda a, b: f"s3://{a}/{b}", st.text(max_size=8), st.text(max_size=20)),
)
ENTRY_KEYS = [
    "objectUrl", "title", "clientMetadata", "createVideo", "externalFileType", "placeholderItemUuid",
    "videoMetadata", "imageMetadata", "audioMetadata", "textMetadata", "pdfMetadata", "dicomMetadata",
    "objectUrl_0", "objectUrl_1", "objectUrl_2", "objectUrl_10", "objectUrl_01", "objectUrl_99999999999",
    "images", "dicomFiles", "url", "tags", "fps", "duration", "width", "height", "fileSize", "file_size",
    "mimeType", "mime_type", "sampleRate", "bitDepth", "codec", "numChannels", "numPages", "object_url",
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False), URLS, st.text(max_size=20),
    st.sampled_from(['{"a": 1}', "[1]", "{", "video/mp4", "0e512467-8806-4a1d-b1ab-08f7ebb9afe8", "0020000E"]),
)
KEY = st.one_of(st.sampled_from(ENTRY_KEYS), st.text(max_size=10))
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEY, children, max_size=5),
    max_leaves=25,
)
def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Pick a strategy with the given odds (one_of would treat repeated branches as one)."""
    total = sum(w for w, _ in options)

    def pick(n: int) -> st.SearchStrategy[Any]:
        for weight, strategy in options:
            if n < weight:
                return strategy
            n -= weight
        raise AssertionError

    return st.integers(0, total - 1).flatmap(pick)


NAME = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=12)
GOOD_URL = st.builds(
    lambda prefix, name, ext: f"{prefix}{name}{ext}",
    st.sampled_from(["s3://b/", "gs://b/d/", "az://c/", "https://h.example/p/", "/srv/", "file:///srv/"]),
    NAME,
    st.sampled_from([".mp4", ".jpg", ".wav", ".txt", ".pdf", ".nii.gz", ".dcm", "", "%20x.png"]),
)
URL = weighted((4, GOOD_URL), (1, URLS))
MEDIA = st.dictionaries(
    st.sampled_from(["fps", "duration", "width", "height", "fileSize", "file_size", "mimeType", "mime_type",
                     "sampleRate", "bit_depth", "codec", "numChannels", "numPages", "bogus"]),
    st.one_of(st.integers(1, 5000), st.floats(0.1, 100), st.sampled_from(["video/mp4", "image/png", "mp3"]),
              SCALARS),
    max_size=4,
)
GOOD_MEDIA = st.dictionaries(
    st.sampled_from(["width", "height", "fileSize", "file_size", "mimeType"]),
    st.one_of(st.integers(1, 5000)), max_size=3,
).map(lambda d: {k: ("image/png" if k == "mimeType" else v) for k, v in d.items()})
OPTIONAL = {
    "title": weighted((6, NAME), (1, SCALARS)),
    "clientMetadata": weighted((6, st.dictionaries(st.text(max_size=5), VALUES, max_size=3)), (1, VALUES)),
    "externalFileType": st.sampled_from(["VIDEO", "IMAGE", "IMAGE", 3]),
}


def _single(media_key: str | None) -> st.SearchStrategy[dict[str, Any]]:
    optional = dict(OPTIONAL) | {"placeholderItemUuid": st.sampled_from(
        ["0e512467-8806-4a1d-b1ab-08f7ebb9afe8"] * 5 + ["nope"])}
    if media_key:
        optional[media_key] = weighted((6, GOOD_MEDIA), (1, MEDIA), (1, VALUES))
    return st.fixed_dictionaries({"objectUrl": URL}, optional=optional)


@st.composite
def _raw_group(draw: Any) -> dict[str, Any]:
    count = draw(st.integers(0, 4))
    positions = draw(st.sampled_from([list(range(count))] * 6 + [list(range(count))[::-1], [0, 2][:count]]))
    group = {f"objectUrl_{i}": draw(URL) for i in positions}
    extra = {k: v for k, v in OPTIONAL.items() if k != "title"}
    extra["createVideo"] = weighted((6, st.booleans()), (1, SCALARS))
    return group | draw(st.fixed_dictionaries({"title": OPTIONAL["title"]}, optional=extra))


def _typed_group(list_key: str, meta_key: str) -> st.SearchStrategy[dict[str, Any]]:
    tags = st.fixed_dictionaries({"tags": st.dictionaries(st.sampled_from(["0020000E", "00100010", "x"]),
                                                          weighted((4, st.none()), (1, VALUES)), max_size=2)})
    frame = st.fixed_dictionaries({"url": URL}, optional={
        "title": weighted((6, NAME), (1, SCALARS)),
        meta_key: weighted((6, GOOD_MEDIA if meta_key == "imageMetadata" else tags), (1, MEDIA), (1, VALUES)),
    })
    return st.fixed_dictionaries({list_key: weighted((8, st.lists(frame, max_size=4)), (1, VALUES))},
                                 optional=dict(OPTIONAL) | {"createVideo": st.booleans()})


ENTRY = st.dictionaries(KEY, st.one_of(URLS, VALUES), max_size=7)
_ENTRIES = {
    "videos": _single("videoMetadata"), "images": _single("imageMetadata"), "audio": _single("audioMetadata"),
    "text": _single("textMetadata"), "pdf": _single("pdfMetadata"), "pdfs": _single("pdfMetadata"),
    "nifti": _single(None), "image_groups": _raw_group(), "dicom_series": _raw_group(),
    "imageGroups": _typed_group("images", "imageMetadata"), "dicomSeries": _typed_group("dicomFiles", "dicomMetadata"),
}
SECTION = st.one_of(st.lists(st.one_of(ENTRY, VALUES), max_size=5), VALUES)


def _section(key: str) -> st.SearchStrategy[Any]:
    good = _ENTRIES.get(key)
    if good is None:
        return st.one_of(st.lists(ENTRY, max_size=2), SECTION)
    return weighted((12, st.lists(good, max_size=5)), (1, st.lists(st.one_of(good, ENTRY, VALUES), max_size=5)),
                    (1, SECTION))


@st.composite
def _manifest(draw: Any, keys: list[str]) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(keys), max_size=4, unique=True))
    doc: dict[str, Any] = {}
    for key in chosen:
        if key in ("skip_duplicate_urls", "skipDuplicateUrls", "upsert_metadata", "upsertMetadata"):
            doc[key] = draw(weighted((12, st.booleans()), (1, SCALARS)))
        elif key == "dataItems":
            doc[key] = draw(weighted((8, _manifest(sorted(DATA_ITEMS_KEYS))), (1, VALUES)))
        else:
            doc[key] = draw(_section(key))
    return doc


DATA_ITEMS = st.dictionaries(st.sampled_from(sorted(DATA_ITEMS_KEYS) + ["bogus"]), st.one_of(SECTION, st.booleans()),
                             max_size=4)
TOP_VALUE = st.one_of(SECTION, st.booleans(), DATA_ITEMS)
DOCUMENT = weighted(
    (16, _manifest(sorted(TOP_KEYS))),
    (1, st.dictionaries(st.sampled_from(sorted(TOP_KEYS) + ["bogus", "Videos"]), TOP_VALUE, max_size=5)),
    (1, VALUES),
)
NOISE = st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xef\xbb\xbf", b"}", b"]", b",", b'"', b"\n", b"1e999",
                         b"NaN", b"tru", b"\\ud800"])


def _mutate(data: bytes, draw: Any) -> bytes:
    action = draw(st.sampled_from(["none"] * 6 + ["truncate", "insert", "insert", "bom"]))
    if action == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if action == "insert":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(NOISE) + data[at:]
    if action == "bom":
        return b"\xef\xbb\xbf" + data
    return data


@FUZZ
@given(doc=DOCUMENT, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]), data=st.data())
def test_fuzz_json(doc: Any, ascii_only: bool, indent: int | None, data: st.DataObject) -> None:
    original = json.dumps(doc, ensure_ascii=ascii_only, indent=indent).encode("utf-8", "surrogatepass")
    raw = _mutate(original, data.draw)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m"
        path.write_bytes(raw)
        assert detect_format(path) in ("json", "csv")
        results, error = check(path, "json")
        assert (results, error) == reference_json(path)  # the fast reader changes nothing
    if raw == original and not isinstance(doc, dict):
        assert error is not None and error.startswith("the manifest must be a JSON object")
    if raw == original and error is None:
        # a readable document yields exactly one result per element of each section list
        expected = 0
        for key, value in doc.items():
            if key == "dataItems" and isinstance(value, dict):
                expected += sum(len(v) for v in value.values() if isinstance(v, list))
            elif isinstance(value, list):
                expected += len(value)
        assert len(results) == expected


# -- CSV --------------------------------------------------------------------------------------


def _variants(name: str) -> list[str]:
    spaced = re.sub(r"(?<!^)(?=[A-Z])", " ", name)
    return [name, name.lower(), name.upper(), spaced, spaced.replace(" ", "_").lower(), f" {name} "]


HEADERS = st.one_of(
    st.sampled_from([v for c in COLUMNS.values() for v in _variants(c.canonical)]),
    st.sampled_from(["", "Bogus", "Image;Url", "s3://b/a.jpg"]),
)
CELLS = st.one_of(
    URLS,
    st.sampled_from(["", " ", "true", "false", "maybe", '{"a": 1}', '{"a": 1e999}', "[1]", "{", "25", "0", "-1",
                     "640.0", "abc", "video/mp4", "g1", "g2", '"', '""', "\n", "\r\n", ",", "s3://b/x.jpg",
                     "s3://b/y.dcm", "s3://b/z.mp4"]),
    st.text(max_size=20),
)


def _cell_for(name: str) -> st.SearchStrategy[str]:
    column = COLUMNS.get(norm(name))
    if column is None:
        return CELLS
    role = column.role
    if role == "url":
        return weighted((5, GOOD_URL), (5, st.just("")), (1, CELLS))
    if role == "group_title":
        return weighted((8, st.sampled_from(["g1", "g1", "g2", ""])), (1, CELLS))
    if role == "create_video":
        return weighted((8, st.sampled_from(["true", "false", "", ""])), (1, CELLS))
    if role == "metadata":
        return weighted((8, st.sampled_from(['{"a": 1}', "", '{"b": [1, 2]}'])), (1, CELLS))
    if role == "title":
        return weighted((4, NAME), (4, st.just("")), (1, CELLS))
    return weighted((8, st.sampled_from(["", "", "", "25", "640", "0.5", "video/mp4", "flac"])), (1, CELLS))


URL_COLUMNS = [c.canonical for c in COLUMNS.values() if c.role == "url"]
OTHER_COLUMNS = [c.canonical for c in COLUMNS.values() if c.role != "url"]
URL_NORMS = {n for n, c in COLUMNS.items() if c.role == "url"}
GROUP_TITLE_FOR = {"imagegroupurl": "imagegrouptitle", "dicomurl": "dicomseriestitle"}


def norm(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).lower()


@st.composite
def _csv_table(draw: Any) -> tuple[list[str], list[list[str]]]:
    if draw(st.integers(0, 4)):
        names = draw(st.lists(st.sampled_from(URL_COLUMNS), min_size=1, max_size=2, unique=True))
        names += draw(st.lists(st.sampled_from(OTHER_COLUMNS), max_size=4, unique=True))
        if {"ImageGroupUrl", "ImageGroupTitle", "CreateVideo"} & set(names):
            names += ["ImageGroupUrl", "ImageGroupTitle"]
        if {"DicomUrl", "DicomSeriesTitle"} & set(names):
            names += ["DicomUrl", "DicomSeriesTitle"]
        names = draw(st.permutations(sorted(set(names))))
        header = [draw(st.sampled_from(_variants(name))) for name in names]
    else:
        header = draw(st.lists(HEADERS, min_size=1, max_size=6))
    url_at = [i for i, h in enumerate(header) if norm(h) in URL_NORMS]
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        row = [draw(_cell_for(h)) for h in header]
        if url_at and draw(st.integers(0, 3)):  # usually exactly one URL per row, titles to match
            keep = draw(st.sampled_from(url_at))
            row = [("" if i in url_at else c) for i, c in enumerate(row)]
            row[keep] = draw(GOOD_URL)
            group = GROUP_TITLE_FOR.get(norm(header[keep]))
            for i, h in enumerate(header):
                if norm(h) in GROUP_TITLE_FOR.values():
                    row[i] = draw(st.sampled_from(["g1", "g1", "g2"])) if norm(h) == group else ""
        if not draw(st.integers(0, 6)):
            row = draw(st.lists(CELLS, max_size=7))
        rows.append(row)
    return header, rows


@FUZZ
@given(
    table=_csv_table(),
    quoting=st.sampled_from(["csv", "csv", "raw"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    data=st.data(),
)
def test_fuzz_csv(table: tuple[list[str], list[list[str]]], quoting: str, newline: str, data: st.DataObject) -> None:
    header, rows = table
    if quoting == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(rows)
        text = out.getvalue()
    else:
        text = newline.join(",".join(r) for r in [header, *rows]) + newline
    raw = _mutate(text.encode("utf-8", "surrogatepass"), data.draw)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m"
        path.write_bytes(raw)
        assert detect_format(path) in ("json", "csv")
        check(path, "csv")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m"
        path.write_bytes(raw)
        for fmt in ("json", "csv"):
            check(path, fmt)


# -- the fast JSON reader hands over to the event parser mid-stream --------------------------

_GOOD = {"objectUrl": "s3://b/a.jpg", "imageMetadata": {"width": 2, "height": 3}, "clientMetadata": {"k": 0.5}}
_ODD_ENTRIES = {
    "NaN": b'{"objectUrl": "s3://b/n.jpg", "clientMetadata": {"x": NaN}}',
    "infinite": b'{"objectUrl": "s3://b/n.jpg", "clientMetadata": {"x": 1e999}}',
    "lone surrogate": b'{"objectUrl": "s3://b/\\ud800.jpg"}',
    "not an object": b'"s3://b/x.jpg"',
    "deep": b'{"objectUrl": "s3://b/d.jpg", "clientMetadata": {"x": ' + b"[" * 70 + b"]" * 70 + b"}}",
    "big": b'{"objectUrl": "s3://b/big.jpg", "clientMetadata": {"x": "' + b"y" * (9 << 20) + b'"}}',
    "near the limit": b'{"objectUrl": "s3://b/big.jpg", "clientMetadata": {"x": [' + b"1," * (1 << 20) + b"1]}}",
    "not UTF-8": b'{"objectUrl": "s3://b/\xff.jpg"}',
    "syntax": b'{"objectUrl": "s3://b/x.jpg",}',
}


@pytest.mark.parametrize("odd", sorted(_ODD_ENTRIES))
def test_fast_reader_hands_over_mid_stream(tmp_path: Path, odd: str) -> None:
    """Thousands of ordinary entries, an odd one, thousands more: the same results and the same
    error as the event parser alone, with the odd entry's neighbours intact."""
    good = json.dumps(_GOOD).encode()
    body = b",\n".join([good] * 3000 + [_ODD_ENTRIES[odd]] + [good] * 3000)
    path = tmp_path / "m.json"
    path.write_bytes(b'{"images": [' + body + b'], "skip_duplicate_urls": true}')
    results, error = check(path, "json")
    assert (results, error) == reference_json(path)
    assert all(isinstance(r, Entry) for r in results[:3000])
    if error is None:
        assert len(results) == 6001
        assert isinstance(results[3000], EntryError) or odd in ("near the limit", "lone surrogate")
        assert isinstance(results[-1], Entry) and results[-1].seq == 6000
        assert read_flags(path, "json") == ManifestFlags(skip_duplicate_urls=True)


# -- runs of entries decoded by one orjson call (the fast reader's ``_run``) -----------------

#: JSON texts where orjson and ``json`` could part ways, or a boundary-like text is no boundary.
HOSTILE = [
    "18446744073709551615", "18446744073709551616", "-9223372036854775808", "-9223372036854775809",
    "123456789012345678901234567890", "9223372036854775807", "1000000000000000000", "999999999999999999",
    "1e400", "-1e400", "1e-400", "-0", "-0.0", "0.1", "2.2250738585072014e-308", "1.7976931348623157e308",
    "12345678901234567890.5", '"\\ud800"', '"\\udc00x"', '"\\ud83d\\ude00"', '"a\\u0000b"', '"\\u00e9"',
    '"},{"', '"}, {"', '"} ,\\n{"', '"}]"', '"\\\\"', '"\\"},{\\""', '"\\"}"', '"{[{["', '"]]}}"',
    '{"a":1,"a":2}', '[{"objectUrl":"s3://b/x"},{"objectUrl":"s3://b/y"}]', '{"objectUrl":1},{"x":2}',
    "NaN", "true", "null", '"s3://b/long/' + "7" * 25 + '.jpg"',
]


def _deep(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


@st.composite
def _hostile_entry(draw: st.DrawFn) -> str:
    """One entry as JSON text: mostly valid, with hostile texts in its values or as extra keys."""
    n = draw(st.integers(0, 10**6))
    fields = [f'"objectUrl": "s3://b/{n}.jpg"']
    where = draw(st.sampled_from(["title", "meta", "media", "extra"]))
    value = draw(st.sampled_from(HOSTILE) | st.integers(58, 66).map(_deep))
    if where == "title":
        fields.append(f'"title": {value}')
    elif where == "meta":
        fields.append(f'"clientMetadata": {{"k": {value}, "n": {draw(st.integers(-2**70, 2**70))}}}')
    elif where == "media":
        fields.append(f'"imageMetadata": {{"width": {value}, "height": 1}}')
    else:
        fields.append(f'"extra": {value}')
    return "{" + draw(st.sampled_from([", ", ",", ",\n  "])).join(fields) + "}"


def _plain_entry(n: int) -> str:
    return f'{{"objectUrl": "s3://b/{n}.jpg", "clientMetadata": {{"camera": "cam-1", "n": {n}, "ok": true}}}}'


@st.composite
def _entries(draw: st.DrawFn) -> list[str]:
    """Plain entries with one or two hostile ones among them (so that the runs around them
    are decoded, and the one holding each is refused or not as it must be)."""
    entries = [_plain_entry(n) for n in draw(st.lists(st.integers(-(2**70), 2**70), min_size=2, max_size=30))]
    for _ in range(draw(st.integers(1, 2))):
        entries.insert(draw(st.integers(0, len(entries))), draw(_hostile_entry()))
    return entries


@FUZZ
@given(entries=_entries(), sep=st.sampled_from([",", ", ", ",\n", " ,\n\t", "\n,"]))
def test_runs_decode_as_the_event_parser_does(entries: list[str], sep: str) -> None:
    """Many entries in one section, with values where orjson and json differ, strings holding
    boundary-like text, entries near the depth limit: the results are the event parser's."""
    text = '{"images": [' + sep.join(entries) + '], "videos": [' + sep.join(reversed(entries)) + "]}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.json"
        path.write_text(text, encoding="utf-8")
        results, error = check(path, "json")
        assert (results, error) == reference_json(path)


def test_runs_are_taken_and_refused_where_they_must_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The realistic case decodes in runs (so the test above tests them), and each screen sends
    its run to the per-entry path, or (boundary-like text inside an entry) measures its entries;
    the results are the event parser's either way."""
    from corral.registration import manifest_json

    taken: list[int] = []
    real = manifest_json._FastReader._run

    def counting(self: Any) -> list[Any] | None:
        run = real(self)
        if run is not None:
            taken.append(len(run))
        return run

    monkeypatch.setattr(manifest_json._FastReader, "_run", counting)
    plain = [f'{{"objectUrl": "s3://b/{i}.jpg", "clientMetadata": {{"i": {i}}}}}' for i in range(3000)]
    cases = {
        "plain": (plain, 2999),
        "a string holds a boundary": ([*plain[:5], '{"objectUrl": "s3://b/x.jpg", "title": "a},{b"}', *plain[5:10]], 10),
        "an integer beyond 64 bits": ([*plain[:5], '{"objectUrl": "s3://b/x.jpg", "clientMetadata": {"n": 18446744073709551616}}', *plain[5:10]], 0),
        "an element not an object": ([*plain[:5], '"s3://b/x.jpg"', *plain[5:10]], 0),
        # (the entries before it make a run: the list's "}]" bounds the first cut)
        "a list of objects as an element": ([*plain[:5], '[{"a": 1},{"b": 2},{"c": 3}]', *plain[5:10]], 4),
        "an entry near the depth limit": ([*plain[:5], '{"objectUrl": "s3://b/x.jpg", "clientMetadata": {"d": ' + _deep(62) + "}}", *plain[5:10]], 0),
        "a lone surrogate": ([*plain[:5], '{"objectUrl": "s3://b/x.jpg", "title": "\\ud800"}', *plain[5:10]], 0),
        "a double overflowing": ([*plain[:5], '{"objectUrl": "s3://b/x.jpg", "clientMetadata": {"x": 1e400}}', *plain[5:10]], 0),
        "a negative integer of 19 digits": ([*plain[:5], '{"objectUrl": "s3://b/x.jpg", "clientMetadata": {"n": -9223372036854775809}}', *plain[5:10]], 0),
        # taken: orjson reads these as json does
        "an integer of 19 digits": ([*plain[:5], '{"objectUrl": "s3://b/x.jpg", "clientMetadata": {"n": 9999999999999999999}}', *plain[5:10]], 10),
        "objects nested in a list": (['{"objectUrl": "s3://b/x.jpg", "clientMetadata": {"l": [{"a": 1},{"b": 2}]}}'] * 3000, 2999),
        "deep, but not too deep": ([*plain[:5], '{"objectUrl": "s3://b/x.jpg", "clientMetadata": {"d": ' + _deep(40) + "}}", *plain[5:10]], 10),
    }
    for name, (texts, in_runs) in cases.items():
        taken.clear()
        path = tmp_path / f"{name}.json"
        path.write_text('{"images": [' + ",".join(texts) + "]}", encoding="utf-8")
        results, error = check(path, "json")
        assert (results, error) == reference_json(path), name
        if name == "a lone surrogate":  # the manifest is refused there, after the entries before it
            assert len(results) == 5 and error is not None and "(a lone surrogate)" in error, name
        else:
            assert len(results) == len(texts), name
        # (never the last entry of a list: its "}" is followed by the "]", not by a boundary)
        assert sum(taken) == in_runs, name


def test_the_printable_shortcut_is_the_character_classes() -> None:
    """check_url / check_title skip their regular expressions for a printable string (without a
    space): no printable character is one those expressions find (this interpreter's Unicode)."""
    import sys

    from corral.registration.entries import _BAD_URL_CHAR, _CONTROL

    printable = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isprintable())
    assert _CONTROL.search(printable) is None
    assert [c for c in _BAD_URL_CHAR.findall(printable)] == [" "]
