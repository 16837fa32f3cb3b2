"""Large manifests stream in bounded memory; throughput is printed (entries/s)."""

from __future__ import annotations

import csv
import json
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.registration.manifest import Entry, ManifestFlags, iter_entries, read_flags

#: 100,000 entries (23 MiB of JSON, 6.7 MiB of CSV) against 10,000: entries held, or the file
#: read whole, cost several times the 2 MiB the two peaks may differ by (either fails this test).
N = 100_000
PEAK_LIMIT = 50 * 2**20


def write_json(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        f.write('{"videos": [\n')
        for i in range(n):
            f.write(("," if i else "") + json.dumps({
                "objectUrl": f"s3://bucket/clips/{i:07d}.mp4", "title": f"clip {i}",
                "clientMetadata": {"camera": f"c{i % 7}", "index": i},
                "videoMetadata": {"fps": 25, "duration": 12.5, "width": 1280, "height": 720, "fileSize": 10_000 + i,
                                  "mimeType": "video/mp4"},
            }) + "\n")
        f.write('], "skip_duplicate_urls": true}\n')
    return path


def write_csv(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageUrl", "Title", "ClientMetadata", "Width", "Height"])
        for i in range(n):
            writer.writerow([f"s3://bucket/img/{i:07d}.jpg", f"image {i}", json.dumps({"index": i}), 640, 480])
    return path


def consume(path: Path, fmt: str) -> int:
    count = 0
    last = None
    for item in iter_entries(path, fmt):  # type: ignore[arg-type]
        assert isinstance(item, Entry)
        count += 1
        last = item
    assert last is not None and last.seq == count - 1
    return count


def traced_peak(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("fmt", "writer"), [("json", write_json), ("csv", write_csv)])
def test_large_manifest_streams_in_bounded_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, writer: Callable[[Path, int], Path]
) -> None:
    big = writer(tmp_path / f"big.{fmt}", N)
    small = writer(tmp_path / f"small.{fmt}", N // 10)

    started = time.perf_counter()
    flags = read_flags(big, fmt)  # type: ignore[arg-type]
    flags_seconds = time.perf_counter() - started
    assert flags == ManifestFlags(skip_duplicate_urls=fmt == "json")

    started = time.perf_counter()
    assert consume(big, fmt) == N
    seconds = time.perf_counter() - started

    peak_big = traced_peak(lambda: consume(big, fmt))
    peak_small = traced_peak(lambda: consume(small, fmt))
    with capsys.disabled():
        print(f"\n{fmt}: {N:,} entries ({big.stat().st_size / 2**20:.1f} MiB) in {seconds:.2f} s = "
              f"{N / seconds:,.0f} entries/s; read_flags {flags_seconds:.2f} s; traced peak "
              f"{peak_big / 2**20:.2f} MiB ({peak_small / 2**20:.2f} MiB for {N // 10:,} entries)")
    assert peak_big < PEAK_LIMIT
    # bounded: ten times the entries does not need noticeably more memory
    assert peak_big < peak_small + 2 * 2**20
