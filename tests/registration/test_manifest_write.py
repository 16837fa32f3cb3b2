"""The failures file `corral import` writes reads back as the same entries."""

from __future__ import annotations

import json
from pathlib import Path

from corral.registration.manifest import Entry, iter_entries
from corral.registration.manifest_write import failed_entries_manifest


def test_failed_entries_round_trip_for_every_data_type(tmp_path: Path) -> None:
    manifest = {
        "videos": [{"objectUrl": "s3://b/v.mp4", "title": "clip", "clientMetadata": {"k": "v"},
                    "videoMetadata": {"fps": 25, "duration": 2.0, "width": 4, "height": 2}}],
        "images": [{"objectUrl": "s3://b/ok.png"}, {"objectUrl": "s3://b/i.png", "imageMetadata": {"width": 3,
                                                                                                   "height": 1}}],
        "image_groups": [{"objectUrl_0": "s3://b/g0.png", "objectUrl_1": "s3://b/g1.png", "title": "g"},
                         {"objectUrl_0": "s3://b/s0.png", "title": "seq", "createVideo": True}],
        "dicom_series": [{"objectUrl_0": "s3://b/d0.dcm", "objectUrl_1": "s3://b/d1.dcm", "title": "d"}],
        "audio": [{"objectUrl": "s3://b/a.wav", "audioMetadata": {"duration": 1.5}}],
        "text": [{"objectUrl": "s3://b/t.txt"}],
        "pdfs": [{"objectUrl": "s3://b/p.pdf"}],
        "nifti": [{"objectUrl": "s3://b/n.nii.gz"}],
    }
    source = tmp_path / "m.json"
    source.write_text(json.dumps(manifest))
    original = [e for e in iter_entries(source, "json") if isinstance(e, Entry)]
    failed = {e.seq for e in original if e.urls != ("s3://b/ok.png",)}
    target = tmp_path / "failed.json"
    assert failed_entries_manifest(source, failed, target) == len(original) - 1
    again = [e for e in iter_entries(target, "json") if isinstance(e, Entry)]
    def key(e: Entry) -> tuple[object, ...]:
        media = {k: v for k, v in e.media.items() if k != "frames"}
        return (e.data_type, e.urls, e.title, e.client_metadata, media)
    assert sorted(map(key, again), key=repr) == sorted((key(e) for e in original if e.seq in failed), key=repr)

    csv = tmp_path / "m.csv"  # a CSV manifest's failures come back as JSON
    csv.write_text("ImageUrl,Title\ns3://b/x.png,x\ns3://b/y.png,y\n")
    assert failed_entries_manifest(csv, {1}, target) == 1
    assert json.loads(target.read_text()) == {"images": [{"objectUrl": "s3://b/y.png", "title": "y"}]}
