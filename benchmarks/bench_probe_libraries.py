"""corral's hand-written media probes against maintained libraries, on the same bytes.

Run on purpose (not part of the test suite; needs the test extras for the sample files):

    .venv/bin/python -m benchmarks.bench_probe_libraries [--repeat 2000]

For each probe that issue 21 names (WebP and HEIF/AVIF sizes, NIfTI headers, WAV and FLAC,
magic bytes), it builds sample files with tests/registration/media.py, gives corral's probe and
the library the *same head bytes* corral reads with its first ranged request, and reports
whether the answers agree and the time per call.  A library replaces hand-written code only
where it answers the same from those bytes at a comparable speed (docs/performance.md).
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import Any


def per_call(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    from corral.registration.probe_image import heif_size, webp_size
    from corral.registration.probe_sniff import sniff
    from tests.registration import media

    rows: list[tuple[str, str, str, float, float]] = []

    def compare(case: str, lib: str, ours: Callable[[], Any], theirs: Callable[[], Any]) -> None:
        try:
            same = "yes" if ours() == theirs() else f"no: {ours()} vs {theirs()}"
        except Exception as exc:  # the library cannot answer from these bytes
            same = f"no: {type(exc).__name__}: {str(exc)[:60]}"
        try:
            t_lib = per_call(theirs, args.repeat)
        except Exception:
            t_lib = float("nan")
        rows.append((case, lib, same, per_call(ours, args.repeat), t_lib))

    import imagesize

    for fmt, size in (("WEBP", (640, 480)), ("WEBP", (33, 17))):
        head = media.image(fmt, *size)[:4096]
        compare(f"WebP {size[0]}x{size[1]} size", "imagesize 2.0",
                lambda h=head: webp_size(h), lambda h=head: imagesize.get(io.BytesIO(h)))
    try:
        avif = media.image("AVIF", 320, 200)[:65536]
        compare("AVIF 320x200 size", "imagesize 2.0",
                lambda: heif_size(avif, "AVIF"), lambda: imagesize.get(io.BytesIO(avif)))
    except (KeyError, OSError, ValueError):
        print("(no AVIF encoder in this Pillow: AVIF not compared)")

    import nibabel

    from corral.registration.probe_docs import probe_nifti

    def nib_dims(h: bytes) -> Any:
        hdr = nibabel.Nifti1Header.from_fileobj(io.BytesIO(h[:348]))
        shape = [int(d) for d in hdr.get_data_shape()]
        zooms = [round(float(z), 6) for z in hdr.get_zooms()]
        return shape, zooms, str(hdr.get_data_dtype().name)

    nii = media.nifti((64, 48, 3), (0.5, 0.5, 2.0))
    fake = _source(nii, "s3://b/x.nii")

    def ours_nifti() -> Any:
        n = probe_nifti(fake).nifti
        assert n is not None
        return n["dims"], n["pixdim"], n["datatype"]

    compare("NIfTI-1 header", "nibabel 5.4", ours_nifti, lambda: nib_dims(nii))

    import soundfile

    from corral.registration.probe_av import probe_flac, probe_wav

    wav = media.wav(1.0, 22050, 2)
    wsrc = _source(wav, "s3://b/x.wav")

    def sf_info(data: bytes, n: int) -> Any:
        i = soundfile.info(io.BytesIO(data[:n]))
        return round(i.duration, 6), i.samplerate, i.channels

    def ours_audio(probe: Callable[[Any], Any], src: Any) -> Any:
        m = probe(src)
        return round(m.duration, 6), m.sample_rate, m.num_channels

    compare("WAV head (64 KiB of 88 KiB)", "soundfile 0.14",
            lambda: ours_audio(probe_wav, wsrc), lambda: sf_info(wav, 65536))
    flac = media.encoded_audio("flac", "flac", rate=44100, channels=2, seconds=1.0)
    fsrc = _source(flac, "s3://b/x.flac")
    compare("FLAC head (64 KiB)", "soundfile 0.14",
            lambda: ours_audio(probe_flac, fsrc), lambda: sf_info(flac, 65536))

    import filetype
    import puremagic

    samples = {
        "PNG": media.png(), "JPEG": media.jpeg(), "WebP": media.image("WEBP"), "GIF": media.image("GIF"),
        "MP4": media.mp4(), "WAV": wav, "FLAC": flac, "NIfTI": nii,
        "DICOM": media.dicom_slice(study_uid="1.2", series_uid="1.2.3", sop_uid="1.2.3.4", instance=1),
        "PDF": media.pdf(), "UTF-16 text": media.text("utf-16"),
    }
    for name, data in samples.items():
        head = data[:65536]
        ours_kind = sniff(head, "s3://b/file").kind
        compare(f"magic: {name}", "filetype 1.2", lambda h=head: sniff(h, "s3://b/file").kind,
                lambda h=head, k=ours_kind: _kind_of(filetype.guess_mime(h)) if _kind_of(
                    filetype.guess_mime(h)) else f"nothing (ours: {k})")
        compare(f"magic: {name}", "puremagic 1.30", lambda h=head: sniff(h, "s3://b/file").kind,
                lambda h=head: _kind_of(_puremagic_mime(puremagic, h)))

    print(f"{'case':34} {'library':16} {'same answer':44} {'corral µs':>10} {'library µs':>11}")
    for case, lib, same, ours_t, lib_t in rows:
        print(f"{case:34} {lib:16} {same[:44]:44} {ours_t:10.1f} {lib_t:11.1f}")


def _puremagic_mime(puremagic: Any, head: bytes) -> str | None:
    try:
        return str(puremagic.from_string(head, mime=True)) or None
    except puremagic.PureError:
        return None


def _kind_of(mime: str | None) -> str | None:
    if not mime:
        return None
    major = mime.split("/", 1)[0]
    if major in ("image", "video", "audio", "text"):
        return major
    return {"application/pdf": "pdf", "application/dicom": "dicom"}.get(mime, mime)


def _source(data: bytes, url: str) -> Any:
    from corral.registration.probe_base import Source
    from corral.registration.probe_sniff import sniff

    return Source(storage=None, url=url, size=len(data), head=data[:65536],  # type: ignore[arg-type]
                  sniffed=sniff(data[:65536], url))


if __name__ == "__main__":
    main()
