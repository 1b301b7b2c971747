"""Safe decoding of ordinary image files (biomedvr_cli.data.decode)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biomedvr_cli.data import DecodeOptions, InvalidImageError, decode_image, parse_window
from biomedvr_cli.errors import InvalidInputError, UsageError


def _rgb(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img)


def test_png_and_jpeg_decode_to_rgb(tmp_path: Path) -> None:
    Image.new("RGB", (20, 10), (10, 200, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (20, 10), (10, 200, 30)).save(tmp_path / "a.jpg", quality=95)
    assert (_rgb(decode_image(tmp_path / "a.png")) == (10, 200, 30)).all()
    jpeg = _rgb(decode_image(tmp_path / "a.jpg")).astype(int)
    assert jpeg.shape == (10, 20, 3)
    assert np.abs(jpeg - (10, 200, 30)).max() <= 3


@pytest.mark.parametrize("suffix", ["png", "tiff"])
def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    # A 12-bit X-ray style range stored in 16 bits: a naive 8-bit conversion clips it all to white.
    values = np.linspace(1000, 4000, 64 * 16).reshape(16, 64).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    image.save(tmp_path / f"x.{suffix}")
    out = _rgb(decode_image(tmp_path / f"x.{suffix}"))[..., 0]
    assert out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) > 200  # the gradient keeps its levels
    assert (np.diff(out.astype(int).ravel()) >= 0).all()  # and its order


def test_float_tiff_is_scaled(tmp_path: Path) -> None:
    values = np.linspace(-1.5, 3.0, 100, dtype=np.float32).reshape(10, 10)
    values[0, 0] = np.nan
    Image.fromarray(values).save(tmp_path / "f.tiff")
    out = _rgb(decode_image(tmp_path / "f.tiff"))[..., 0]
    assert out[0, 0] == 0 and out[0, 1] == 0 and out.max() == 255


def test_grey_palette_cmyk_bilevel_to_rgb(tmp_path: Path) -> None:
    Image.new("L", (4, 4), 77).save(tmp_path / "grey.png")
    Image.new("1", (4, 4), 1).save(tmp_path / "bw.png")
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 0, 0, 250] + [0] * 762)
    palette.save(tmp_path / "pal.gif")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    assert (_rgb(decode_image(tmp_path / "grey.png")) == 77).all()
    assert (_rgb(decode_image(tmp_path / "bw.png")) == 255).all()
    assert (_rgb(decode_image(tmp_path / "pal.gif")) == (0, 0, 250)).all()
    cmyk = _rgb(decode_image(tmp_path / "cmyk.jpg")).astype(int)
    assert cmyk[..., 0].mean() > 230 and cmyk[..., 1].mean() < 25 and cmyk[..., 2].mean() < 25  # red


def test_alpha_is_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)  # opaque: unchanged
    rgba[0, 1] = (200, 100, 50, 0)  # transparent: black
    rgba[1, 0] = (200, 100, 50, 128)  # half: half brightness
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.array([[255, 255]], dtype=np.uint8)).convert("LA").save(tmp_path / "la.png")
    out = _rgb(decode_image(tmp_path / "a.png")).astype(int)
    assert tuple(out[0, 0]) == (200, 100, 50)
    assert tuple(out[0, 1]) == (0, 0, 0)
    assert np.abs(out[1, 0] - (100, 50, 25)).max() <= 1
    assert (_rgb(decode_image(tmp_path / "la.png")) == 255).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    stored.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = _rgb(decode_image(tmp_path / "rot.jpg")).astype(int)
    assert out.shape == (40, 20, 3)  # now portrait
    assert out[5, 10, 0] > 200 and out[35, 10, 2] > 200  # red on top, blue at the bottom


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(InvalidImageError, match="decompression bomb") as info:
        decode_image(bomb)
    assert info.value.exit_code == 3
    previous = Image.MAX_IMAGE_PIXELS
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(InvalidImageError, match="cap of 5,000 pixels"):
        decode_image(tmp_path / "big.png", DecodeOptions(max_pixels=5_000))
    assert Image.MAX_IMAGE_PIXELS == previous  # the process-wide setting is restored
    assert decode_image(tmp_path / "big.png", DecodeOptions(max_pixels=10_000)).size == (100, 100)


def test_cap_above_pillows_default_is_honoured(tmp_path: Path) -> None:
    # Only the header is read: a cap above Pillow's own limit lets the header through,
    # and the missing pixel data is then reported as a corrupt file, not as a bomb.
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(12_000, 12_000))
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        decode_image(path, DecodeOptions(max_pixels=200_000_000))


def test_truncated_zero_byte_and_non_image_files(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(data).save(tmp_path / "full.png")
    Image.fromarray(data).save(tmp_path / "full.jpg")
    for name in ("full.png", "full.jpg"):
        raw = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("this is not a picture")
    cases = {
        "cut-full.png": "truncated or corrupt",
        "cut-full.jpg": "truncated or corrupt",
        "zero.png": "empty file",
        "text.png": "not an image",
        "absent.png": "file not found",
    }
    for name, reason in cases.items():
        with pytest.raises(InvalidImageError, match=reason) as info:
            decode_image(tmp_path / name)
        assert isinstance(info.value, InvalidInputError)
        assert str(tmp_path) not in info.value.one_line()  # the file's name only, never its folder
        assert name in info.value.one_line()


def test_risky_formats_are_not_opened(tmp_path: Path) -> None:
    eps = tmp_path / "figure.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(InvalidImageError, match="not an image"):
        decode_image(eps)


def test_options_and_window_parsing() -> None:
    assert parse_window("40,400") == (40.0, 400.0)
    assert parse_window(" -600 , 1500 ") == (-600.0, 1500.0)
    for bad in ("40", "a,b", "40,0", "1,2,3"):
        with pytest.raises(UsageError):
            parse_window(bad)
    with pytest.raises(UsageError):
        DecodeOptions(max_pixels=0)
    with pytest.raises(UsageError):
        DecodeOptions(window=(40, -1))
