"""Decoding defects a hostile review of the data path found (2026-12-07): NUL paths, DICOM
headers that disagree with their pixels, Deflate and JPEG bombs, non-finite windows.

Every DICOM here is a tiny synthetic file made with pydicom.
"""

from __future__ import annotations

import io
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from typer.testing import CliRunner

import biomedvr_cli.data.dicom as dicom_module
from biomedvr_cli.cli.app import app
from biomedvr_cli.data import DecodeOptions, InvalidImageError, decode_image, parse_window
from biomedvr_cli.data.limits import j2k_size, jpeg_size
from biomedvr_cli.data.tensors import decode_to_tensors
from biomedvr_cli.errors import EXIT_INVALID_INPUT, EXIT_USAGE, InvalidInputError, UsageError

runner = CliRunner()


def _dicom(path: Path, *, rows: int = 4, columns: int = 4, photometric: str = "MONOCHROME2", samples: int = 1,
           pixels: bytes | None = None, syntax: str = ExplicitVRLittleEndian, **extra: object) -> Path:
    """An 8-bit Secondary Capture file; ``extra`` sets further header elements."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, columns, samples, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if samples == 3:
        ds.PlanarConfiguration = 0
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    if pixels is None:
        pixels = (np.arange(rows * columns * samples) * 7 % 200).astype(np.uint8).tobytes()
    ds.PixelData = pixels
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _png(path: Path) -> Path:
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return path


def _jpeg(width: int, height: int, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.arange(width * height) % 251).astype(np.uint8).reshape(height, width)).save(
        buffer, "JPEG", **save)
    return buffer.getvalue()


# --- 3: a NUL byte in a path --------------------------------------------------------------


def test_a_path_with_a_nul_byte_is_that_images_own_failure(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="the path holds a NUL byte") as info:
        decode_image(tmp_path / "x\x00y.png")
    assert "\x00" not in info.value.one_line() and str(tmp_path) not in info.value.one_line()
    batch = decode_to_tensors([_png(tmp_path / "good.png"), tmp_path / "x\x00y.png"], 16)
    assert batch.kept == [0] and "NUL byte" in batch.failures[0][1]


# --- 6: DICOM headers that disagree with their pixels -------------------------------------


@pytest.mark.parametrize(("photometric", "samples"), [("RGB", 1), ("YBR_FULL", 1), ("MONOCHROME2", 3),
                                                      ("PALETTE COLOR", 3), ("ARGB", 4)])
def test_samples_per_pixel_that_cannot_go_with_the_photometric_is_unreadable(
        tmp_path: Path, photometric: str, samples: int) -> None:
    path = _dicom(tmp_path / "odd.dcm", rows=8, columns=8, photometric=photometric, samples=samples)
    with pytest.raises(InvalidImageError, match="unreadable DICOM: Photometric Interpretation"):
        decode_image(path)


def test_pixel_data_a_frame_longer_than_the_header_is_unreadable(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "long.dcm", pixels=bytes(16 * 1000))
    with pytest.raises(InvalidImageError, match="unreadable DICOM: its Pixel Data holds 16,000 bytes.* declares 16"):
        decode_image(path)
    # Less than a frame of trailing padding is what some writers add: still read.
    padded = _dicom(tmp_path / "padded.dcm", pixels=bytes(range(16)) + bytes(4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom notes the excess bytes
        assert decode_image(padded).size == (4, 4)


@pytest.mark.parametrize("extra", [{"Rows": [4, 4]}, {"Columns": [4, 4]}, {"SamplesPerPixel": [1, 1]}])
def test_a_multi_valued_size_element_is_refused_not_a_crash(tmp_path: Path, extra: dict[str, object]) -> None:
    with pytest.raises(InvalidImageError):
        decode_image(_dicom(tmp_path / "multi.dcm", pixels=bytes(16), **extra))


def test_odd_dicom_layouts_fail_alone_and_the_run_goes_on(tmp_path: Path) -> None:
    files = [_dicom(tmp_path / "rgb1.dcm", rows=8, columns=8, photometric="RGB"),
             _dicom(tmp_path / "long.dcm", pixels=bytes(16 * 50)),
             _png(tmp_path / "good.png"),
             _dicom(tmp_path / "fine.dcm", rows=8, columns=8)]
    batch = decode_to_tensors(files, 16)
    assert batch.kept == [2, 3]
    assert [path.name for path, _ in batch.failures] == ["rgb1.dcm", "long.dcm"]
    assert all("unreadable DICOM" in reason for _, reason in batch.failures)


# --- 7: bombs: Deflate and compressed frames larger than their header -----------------------


def test_a_deflated_dicom_decodes_like_the_uncompressed_one(tmp_path: Path) -> None:
    plain = _dicom(tmp_path / "plain.dcm", rows=16, columns=12)
    deflated = _dicom(tmp_path / "deflated.dcm", rows=16, columns=12, syntax=DeflatedExplicitVRLittleEndian)
    assert (np.asarray(decode_image(deflated)) == np.asarray(decode_image(plain))).all()


def test_a_deflate_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    bomb = _dicom(tmp_path / "bomb.dcm", rows=16, columns=16, pixels=bytes(64 * 2**20),
                  syntax=DeflatedExplicitVRLittleEndian)
    assert bomb.stat().st_size < 2**20  # 64 MiB of pixel data in well under 1 MiB
    tracemalloc.start()
    try:
        with pytest.raises(InvalidImageError, match="inflates past what its header declares"):
            decode_image(bomb, DecodeOptions(max_pixels=1000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20  # bounded by the 16 MiB header allowance, not the 64 MiB it inflates to


def test_the_deflate_cap_is_checked_from_the_header_and_counts_every_frame(tmp_path: Path) -> None:
    big = _dicom(tmp_path / "big.dcm", rows=40, columns=40, syntax=DeflatedExplicitVRLittleEndian)
    with pytest.raises(InvalidImageError, match="40x40 pixels exceeds the cap of 1,000"):
        decode_image(big, DecodeOptions(max_pixels=1000))
    frames = _dicom(tmp_path / "frames.dcm", rows=16, columns=16, pixels=bytes(16 * 16 * 10), NumberOfFrames=10,
                    syntax=DeflatedExplicitVRLittleEndian)
    with pytest.raises(InvalidImageError, match="10 frames of 16x16 pixels exceeds the cap of 1,000"):
        decode_image(frames, DecodeOptions(max_pixels=1000))
    assert decode_image(frames, DecodeOptions(max_pixels=2560)).size == (16, 16)


def test_a_jpeg_frame_larger_than_its_header_is_refused_before_decoding(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    good = _dicom(tmp_path / "good.dcm", rows=48, columns=64, pixels=encapsulate([_jpeg(64, 48)]),
                  syntax=JPEGBaseline8Bit)
    assert decode_image(good).size == (64, 48)
    liar = _dicom(tmp_path / "liar.dcm", rows=16, columns=16, pixels=encapsulate([_jpeg(640, 480)]),
                  syntax=JPEGBaseline8Bit)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the frame was handed to a decoder")

    monkeypatch.setattr(dicom_module, "pixel_array", never)
    with pytest.raises(InvalidImageError, match="compressed frame is 640x480 pixels; its header says 16x16"):
        decode_image(liar, DecodeOptions(max_pixels=1000))


def test_frame_sizes_are_read_from_jpeg_and_jpeg_2000_headers(tmp_path: Path) -> None:
    assert jpeg_size(_jpeg(33, 17)) == (33, 17)
    assert jpeg_size(_jpeg(33, 17, progressive=True)) == (33, 17)
    assert jpeg_size(b"\xff\xd8\xff\xda\x00\x02") is None  # scan data before any frame header
    assert jpeg_size(b"not a jpeg") is None
    try:
        Image.new("L", (40, 24)).save(tmp_path / "f.j2k")
    except OSError:
        pytest.skip("this Pillow has no JPEG 2000 encoder")
    assert j2k_size((tmp_path / "f.j2k").read_bytes()) == (40, 24)
    assert j2k_size(b"\x00" * 64) is None


# --- 8: non-finite windows ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["nan,400", "inf,400", "40,inf", "40,nan", "-inf,400", "1e300,400"])
def test_a_window_that_is_not_a_finite_number_is_a_bad_option(text: str) -> None:
    with pytest.raises(UsageError, match="finite") as info:
        parse_window(text)
    assert info.value.exit_code == EXIT_USAGE
    center, width = (float(part) for part in text.split(","))
    with pytest.raises(UsageError, match="finite"):
        DecodeOptions(window=(center, width))


@pytest.mark.parametrize(("center", "width"), [("NaN", "400"), ("inf", "400"), ("40", "inf"), ("40", "NaN")])
@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # pydicom warns when the test file is made
def test_a_files_non_finite_window_is_ignored_as_if_absent(tmp_path: Path, center: str, width: str) -> None:
    pixels = (np.arange(64, dtype=np.uint8) * 3).tobytes()
    plain = decode_image(_dicom(tmp_path / "plain.dcm", rows=8, columns=8, pixels=pixels))
    odd = _dicom(tmp_path / "odd.dcm", rows=8, columns=8, pixels=pixels, WindowCenter=center, WindowWidth=width)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's "invalid value encountered in cast"
        out = np.asarray(decode_image(odd))
    assert (out == np.asarray(plain)).all() and out.min() == 0 and out.max() == 255  # min..max, not blank


# --- end to end: predict keeps the good images, refuses a bad --window --------------------------


@pytest.fixture()
def adapter(tiny_colour_adapter: tuple[Path, Path, str]) -> tuple[Path, Path, str]:
    return tiny_colour_adapter


def test_predict_reports_bad_dicoms_per_row_and_keeps_the_rest(adapter, tmp_path: Path) -> None:
    root, out, spec = adapter
    bad = [_dicom(tmp_path / "rgb1.dcm", rows=16, columns=16, photometric="RGB"),
           _dicom(tmp_path / "long.dcm", pixels=bytes(16 * 1000)),
           _dicom(tmp_path / "bomb.dcm", rows=16, columns=16, pixels=bytes(4 * 2**20),
                  syntax=DeflatedExplicitVRLittleEndian)]
    good = next(root.rglob("*.png"))
    result = runner.invoke(app, ["predict", *map(str, bad), str(good), "--adapter", str(out), "--backbone", spec,
                                 "--max-pixels", "2000", "--format", "csv"])
    assert result.exit_code == EXIT_INVALID_INPUT, result.stderr
    rows = result.stdout.splitlines()[1:]
    assert len(rows) == 4 and all("unreadable DICOM" in row for row in rows[:3])
    assert rows[3].startswith(str(good)) and rows[3].split(",")[1]  # the good image has its prediction


def test_predict_refuses_a_non_finite_window_and_the_api_a_nul_path(adapter, tmp_path: Path) -> None:
    import biomedvr

    root, out, spec = adapter
    good = next(root.rglob("*.png"))
    for text in ("nan,400", "inf,400", "40,inf"):
        result = runner.invoke(app, ["predict", str(good), "--adapter", str(out), "--backbone", spec,
                                     "--window", text])
        assert result.exit_code == EXIT_USAGE and "finite" in result.stderr
    predictor = biomedvr.load(out, backbone=spec)
    with pytest.raises(InvalidInputError, match="NUL byte"):
        predictor.classify([str(tmp_path / "x\x00y.png")])


def test_a_jpeg_frame_above_pillows_own_limit_decodes_when_our_cap_allows_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow refuses images above twice its global limit (about 179 MP) whatever --max-pixels says;
    a DICOM JPEG frame our cap allows is decoded anyway, and Pillow's limit is put back after."""
    path = _dicom(tmp_path / "big.dcm", rows=48, columns=64, pixels=encapsulate([_jpeg(64, 48)]),
                  syntax=JPEGBaseline8Bit)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 48 is far beyond twice this
    assert decode_image(path, DecodeOptions(max_pixels=10_000)).size == (64, 48)
    assert Image.MAX_IMAGE_PIXELS == 100
    with pytest.raises(InvalidImageError, match="exceeds the cap of 1,000"):
        decode_image(path, DecodeOptions(max_pixels=1000))  # our own cap still holds
