"""DICOM decoding through pydicom's bundled example files (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import JPEGLSLossless

from biomedvr_cli.data import DecodeOptions, InvalidImageError, decode_image, is_image_file


def _bundled(name: str) -> Path:
    found = get_testdata_file(name, download=False)  # only files shipped inside the pydicom wheel
    if found is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    return Path(found)


def _grey(path: Path, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
    image = decode_image(path, options)
    assert image.mode == "RGB"
    out = np.asarray(image)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    return out[..., 0].astype(int)


def test_ct_modality_lut_and_window_override() -> None:
    path = _bundled("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    # No window in the file: the modality values' own range maps to 0..255.
    plain = _grey(path)
    assert plain.shape == (128, 128) and plain.min() == 0 and plain.max() == 255
    expected = np.rint((hu - hu.min()) * 255 / (hu.max() - hu.min()))
    assert np.abs(plain - expected).max() <= 1
    # An explicit window in Hounsfield units (soft tissue 40/400) saturates outside it.
    windowed = _grey(path, DecodeOptions(window=(40, 400)))
    assert (windowed[hu <= 40 - 0.5 - 199.5] == 0).all()
    assert (windowed[hu > 40 - 0.5 + 199.5] == 255).all()
    inside = (hu > -150) & (hu < 230)
    assert np.abs(windowed[inside] - np.rint(((hu[inside] - 39.5) / 399 + 0.5) * 255)).max() <= 1


def test_mr_uses_the_files_window() -> None:
    path = _bundled("MR_small.dcm")
    ds = pydicom.dcmread(path)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    out = _grey(path)
    expected = np.rint(np.clip((ds.pixel_array - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255)
    assert np.abs(out - expected).max() <= 1
    # Same pixels through RLE decode the same.
    assert (out == _grey(_bundled("MR_small_RLE.dcm"))).all()


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_bundled("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    assert (_grey(tmp_path / "mono1.dcm") == 255 - _grey(_bundled("MR_small.dcm"))).all()


def test_multi_frame_uses_the_middle_frame() -> None:
    path = _bundled("rtdose.dcm")  # 15 frames: the middle one is index 7
    ds = pydicom.dcmread(path)
    assert int(ds.NumberOfFrames) == 15
    frame = pixel_array(ds, index=7).astype(float)
    expected = np.rint((frame - frame.min()) * 255 / (frame.max() - frame.min()))
    assert np.abs(_grey(path) - expected).max() <= 1
    # Colour, 2 frames: index 1.
    rgb_path = _bundled("SC_rgb_rle_2frame.dcm")
    assert (np.asarray(decode_image(rgb_path)) == pixel_array(pydicom.dcmread(rgb_path), index=1)).all()


def test_rgb_ybr_and_palette_dicom() -> None:
    reference = np.asarray(decode_image(_bundled("SC_rgb_rle.dcm"))).astype(int)
    assert tuple(reference[5, 5]) == (255, 0, 0)  # the top band of this test pattern is red
    for name in ("SC_rgb_rle_16bit.dcm", "SC_ybr_full_422_uncompressed.dcm", "SC_rgb_jpeg_dcmtk.dcm"):
        other = np.asarray(decode_image(_bundled(name))).astype(int)
        assert np.abs(other - reference).mean() < 3, name
    palette = decode_image(_bundled("examples_palette.dcm"))
    assert palette.mode == "RGB" and palette.size == (800, 350)
    colour = np.asarray(decode_image(_bundled("examples_rgb_color.dcm")))
    assert colour.shape == (240, 320, 3) and not (colour[..., 0] == colour[..., 2]).all()


def test_missing_decoder_names_the_plugin() -> None:
    path = _bundled("MR_small_jpeg_ls_lossless.dcm")
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(InvalidImageError, match="pyjpegls") as info:
        decode_image(path)
    assert "pylibjpeg" in info.value.message and "python-gdcm" in info.value.message
    assert info.value.hint.startswith("pip install")


def test_dicom_without_extension_or_preamble(tmp_path: Path) -> None:
    source = _bundled("MR_small.dcm")
    no_extension = tmp_path / "IM000001"
    no_extension.write_bytes(source.read_bytes())
    assert is_image_file(no_extension)
    # Raw dataset, no 128-byte preamble and no file meta: read by its .dcm extension.
    ds = pydicom.dcmread(source)
    bare = tmp_path / "bare.dcm"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.preamble = None
    pydicom.dcmwrite(bare, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert bare.read_bytes()[128:132] != b"DICM"
    reference = _grey(source)
    assert (_grey(no_extension) == reference).all()
    assert (_grey(bare) == reference).all()


def test_bad_dicom_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="pixel data cannot be decoded"):
        decode_image(_bundled("MR_truncated.dcm"))
    with pytest.raises(InvalidImageError, match="no image"):
        decode_image(_bundled("rtplan.dcm"))
    fake = tmp_path / "fake.dcm"
    fake.write_text("definitely not DICOM")
    with pytest.raises(InvalidImageError) as info:
        decode_image(fake)
    assert str(tmp_path) not in info.value.one_line()
    with pytest.raises(InvalidImageError, match="exceeds the cap"):
        decode_image(_bundled("CT_small.dcm"), DecodeOptions(max_pixels=1000))


def _enhanced_multi_frame(path: Path) -> np.ndarray:
    """A 3-frame file whose rescale is shared and whose window is given per frame."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = np.stack([np.arange(16, dtype=np.uint16).reshape(4, 4) * 10 + 100 * i for i in range(3)])
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4, 4, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = "2", "-100", "HU"
    shared = Dataset()
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for i in range(3):
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = str(200 + 200 * i), "101"
        item = Dataset()
        item.FrameVOILUTSequence = Sequence([voi])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return frames


def test_enhanced_multi_frame_reads_functional_groups(tmp_path: Path) -> None:
    frames = _enhanced_multi_frame(tmp_path / "enhanced.dcm")
    values = frames[1].astype(float) * 2 - 100  # middle frame, shared rescale
    expected = np.rint(np.clip((values - (400 - 0.5)) / 100 + 0.5, 0, 1) * 255)  # its own window 400/101
    assert (_grey(tmp_path / "enhanced.dcm") == expected).all()


def test_voi_lut_sequence_is_applied(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(_bundled("MR_small.dcm"))
    top = int(ds.pixel_array.max()) + 1
    lut = Dataset()
    lut.LUTDescriptor = [top, 0, 16]
    lut.add_new("LUTData", "US", list(range(top - 1, -1, -1)))  # an inverting table
    ds.VOILUTSequence = Sequence([lut])
    ds.save_as(tmp_path / "voi.dcm")
    out = _grey(tmp_path / "voi.dcm")
    expected = np.rint((top - 1 - ds.pixel_array.astype(float)) * 255 / (top - 1))
    assert np.abs(out - expected).max() <= 1


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # pydicom warns when the test file is made
def test_a_rescale_that_is_not_a_number_is_refused_not_a_blank_image(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_bundled("CT_small.dcm"))
    ds.RescaleSlope = "NaN"
    path = tmp_path / "nan-slope.dcm"
    ds.save_as(path)
    with pytest.raises(InvalidImageError, match="Rescale Slope/Intercept nan/.* is not a finite number"):
        decode_image(path)
