"""Tests for studio.images: awkward-but-valid images load with the right pixels; bad files are refused."""

from __future__ import annotations

import hashlib
import logging
import resource
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from studio.images import (
    BACKGROUND,
    MAX_ASPECT,
    MIN_SIDE,
    PIXEL_LIMIT,
    ImageError,
    image_sha256,
    load_image,
    probe_image,
)

DATA = Path(__file__).parent / "data"
RED, BLUE = (255, 0, 0), (0, 0, 255)


def _corner_image(w: int = 40, h: int = 20) -> Image.Image:
    """Blue w×h image with a red 6×6 block in the stored top-left corner."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:] = BLUE
    a[:6, :6] = RED
    return Image.fromarray(a)


def _exif(orientation: int) -> Image.Exif:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _fake_png(path: Path, w: int, h: int) -> Path:
    """A tiny PNG whose IHDR claims w×h RGB (pixel data is a few bytes only)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body + _png_chunk(b"IEND", b""))
    return path


def _refused(path: Path, *words: str, **kw) -> str:
    """Assert load_image refuses `path` with ImageError naming the file and containing `words`."""
    with pytest.raises(ImageError) as ei:
        load_image(path, **kw)
    msg = str(ei.value)
    assert path.name in msg, msg
    for w in words:
        assert w.lower() in msg.lower(), (w, msg)
    return msg


# ---------------------------------------------------------------- valid, awkward images


def test_real_photo_matches_pillow_decode():
    out = load_image(DATA / "astronaut.jpg")
    ref = np.asarray(Image.open(DATA / "astronaut.jpg").convert("RGB"))
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous and out.flags.writeable
    assert np.array_equal(out, ref)


@pytest.mark.parametrize(
    "fmt,orientation,corner",
    [("PNG", 6, "top_right"), ("JPEG", 8, "bottom_left"), ("PNG", 3, "bottom_right"), ("PNG", 1, "top_left")],
)
def test_exif_orientation_applied(tmp_path, fmt, orientation, corner):
    p = tmp_path / f"rot{orientation}.{fmt.lower()}"
    _corner_image().save(p, fmt, exif=_exif(orientation), **({"quality": 95} if fmt == "JPEG" else {}))
    out = load_image(p).astype(int)
    assert out.shape == ((20, 40, 3) if orientation in (1, 3) else (40, 20, 3))
    blocks = {
        "top_left": out[1:4, 1:4],
        "top_right": out[1:4, -4:-1],
        "bottom_left": out[-4:-1, 1:4],
        "bottom_right": out[-4:-1, -4:-1],
    }
    for name, block in blocks.items():
        want = RED if name == corner else BLUE
        assert np.abs(block - np.array(want)).max() <= 12, (name, block.mean(axis=(0, 1)))
    assert probe_image(p)["orientation"] == orientation


def test_rgba_flattened_over_background(tmp_path):
    a = np.zeros((16, 32, 4), np.uint8)
    a[:, :8] = (255, 0, 0, 0)  # fully transparent red -> background
    a[:, 8:16] = (255, 0, 0, 255)  # opaque red
    a[:, 16:] = (255, 0, 0, 128)  # half red over white
    p = tmp_path / "alpha.png"
    Image.fromarray(a).save(p)  # 4 channels -> RGBA
    out = load_image(p)
    assert tuple(out[0, 0]) == BACKGROUND == (255, 255, 255)
    assert tuple(out[0, 10]) == (255, 0, 0)
    assert tuple(out[0, 20]) == (255, 127, 127)  # 255*(127/255) rounded
    assert tuple(load_image(p, background=(0, 0, 0))[0, 0]) == (0, 0, 0)


def test_la_and_palette_transparency(tmp_path):
    la = Image.new("LA", (16, 16), (40, 0))
    la.putpixel((0, 0), (40, 255))
    la.save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    assert tuple(out[0, 0]) == (40, 40, 40) and tuple(out[5, 5]) == (255, 255, 255)

    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.paste(1, (8, 0, 16, 16))
    pal.save(tmp_path / "p_trns.png", transparency=0)
    out = load_image(tmp_path / "p_trns.png")
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 12]) == (10, 200, 30)


@pytest.mark.parametrize("ext", ["png", "gif", "bmp", "tiff"])
def test_palette_colours_preserved(tmp_path, ext):
    colours = [(12, 34, 56), (200, 100, 50), (0, 255, 128), (250, 250, 10)]
    pal = Image.new("P", (32, 16), 0)
    pal.putpalette([c for rgb in colours for c in rgb] + [0] * (768 - 12))
    for i in range(4):
        pal.paste(i, (i * 8, 0, i * 8 + 8, 16))
    p = tmp_path / f"pal.{ext}"
    pal.save(p)
    out = load_image(p)
    assert out.shape == (16, 32, 3)
    for i, rgb in enumerate(colours):
        assert tuple(out[5, i * 8 + 3]) == rgb


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_gray_scaled_not_clipped(tmp_path, ext):
    vals = np.array([0, 257, 32768, 65535, 1000, 65280], np.uint16)
    a = np.repeat(np.repeat(vals[None, :], 16, axis=0), 4, axis=1)  # 16×24
    p = tmp_path / f"g16.{ext}"
    assert cv2.imwrite(str(p), a)
    assert Image.open(p).mode == "I;16"
    out = load_image(p)
    assert out.shape == (16, 24, 3)
    assert [int(out[0, i * 4 + 1, 0]) for i in range(6)] == [0, 1, 128, 255, 4, 254]
    assert np.array_equal(out[..., 0], out[..., 2])


def test_16bit_big_endian_tiff(tmp_path):
    a = np.tile(np.array([0, 32768, 65535, 16384], np.uint16), (16, 4))
    p = tmp_path / "g16b.tif"
    Image.frombytes("I;16B", (16, 16), a.astype(">u2").tobytes()).save(p)
    assert Image.open(p).mode == "I;16B"
    assert [int(v) for v in load_image(p)[0, :4, 1]] == [0, 128, 255, 64]


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_rgb(tmp_path, ext):
    bgr = np.zeros((16, 16, 3), np.uint16)
    bgr[..., 2], bgr[..., 1], bgr[..., 0] = 65535, 32768, 0  # RGB = (65535, 32768, 0)
    p = tmp_path / f"c16.{ext}"
    assert cv2.imwrite(str(p), bgr)
    assert tuple(load_image(p)[3, 3]) == (255, 128, 0)


def test_float_and_32bit_int_images(tmp_path):
    f = np.tile(np.array([0.0, 0.5, 1.0, 0.25], np.float32), (16, 4))
    Image.fromarray(f).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert [int(v) for v in load_image(tmp_path / "f.tif")[0, :4, 0]] == [0, 128, 255, 64]
    i32 = np.tile(np.array([0, 32768, 65535, 257], np.int32), (16, 4))
    Image.fromarray(i32).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    assert [int(v) for v in load_image(tmp_path / "i.tif")[0, :4, 2]] == [0, 128, 255, 1]


def test_cmyk_cyan(tmp_path):
    im = Image.new("CMYK", (24, 24), (255, 0, 0, 0))
    im.save(tmp_path / "cyan.tif")
    im.save(tmp_path / "cyan.jpg", quality=95)
    assert tuple(load_image(tmp_path / "cyan.tif")[5, 5]) == (0, 255, 255)
    px = load_image(tmp_path / "cyan.jpg")[12, 12].astype(int)
    assert np.abs(px - (0, 255, 255)).max() <= 6, px


def test_one_bit_gray_and_ycbcr(tmp_path):
    bw = Image.new("1", (24, 16), 0)
    bw.paste(1, (12, 0, 24, 16))
    bw.save(tmp_path / "bw.bmp")
    out = load_image(tmp_path / "bw.bmp")
    assert tuple(out[0, 0]) == (0, 0, 0) and tuple(out[0, 20]) == (255, 255, 255)
    Image.new("L", (16, 16), 77).save(tmp_path / "gray.png")
    assert tuple(load_image(tmp_path / "gray.png")[4, 4]) == (77, 77, 77)
    Image.new("YCbCr", (16, 16), (128, 128, 128)).save(tmp_path / "ycc.jpg", quality=100)
    assert np.abs(load_image(tmp_path / "ycc.jpg")[8, 8].astype(int) - 128).max() <= 2


@pytest.mark.parametrize("ext", ["gif", "png", "webp"])
def test_first_frame_of_animation(tmp_path, ext):
    frames = [Image.new("RGB", (24, 24), RED), Image.new("RGB", (24, 24), BLUE)]
    p = tmp_path / f"anim.{ext}"
    kw = {"lossless": True} if ext == "webp" else {}
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0, **kw)
    assert probe_image(p)["frames"] == 2
    out = load_image(p)
    assert out.shape == (24, 24, 3)
    assert np.abs(out.astype(int) - RED).max() <= 2


def test_lossless_formats_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (20, 36, 3), dtype=np.uint8)
    for name, kw in [("x.bmp", {}), ("x.tiff", {}), ("x.webp", {"lossless": True}), ("x.png", {})]:
        Image.fromarray(a).save(tmp_path / name, **kw)
        assert np.array_equal(load_image(tmp_path / name), a), name


def test_huge_image_downscaled_and_logged(tmp_path, caplog):
    a = np.zeros((3000, 5000, 3), np.uint8)
    a[:, 2500:] = BLUE
    a[1500:, :2500] = (0, 255, 0)
    p = tmp_path / "huge.jpg"
    Image.fromarray(a).save(p, quality=90)
    with caplog.at_level(logging.INFO, logger="studio.images"):
        out = load_image(p)
    assert out.shape == (2458, 4096, 3)
    assert "downscaled 5000x3000 -> 4096x2458" in caplog.text
    for (y, x), want in {(100, 100): (0, 0, 0), (100, 4000): BLUE, (2400, 100): (0, 255, 0)}.items():
        assert np.abs(out[y, x].astype(int) - want).max() <= 4, (y, x, out[y, x])
    small = load_image(p, max_side=1000)  # JPEG draft path: DCT-scaled decode, then Lanczos
    assert small.shape == (600, 1000, 3)
    assert np.abs(small[550, 900].astype(int) - BLUE).max() <= 4


def test_probe_and_sha256(tmp_path):
    p = tmp_path / "rot.png"
    _corner_image().save(p, exif=_exif(6))
    info = probe_image(p)
    assert info["format"] == "PNG" and info["size"] == (40, 20) and info["display_size"] == (20, 40)
    assert info["mode"] == "RGB" and info["frames"] == 1 and info["has_alpha"] is False
    assert image_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    with pytest.raises(ImageError, match="nothere.png.*not found"):
        image_sha256(tmp_path / "nothere.png")


def test_module_limits_and_argument_checks(tmp_path):
    assert PIXEL_LIMIT == 100_000_000 and MAX_ASPECT == 8 and MIN_SIDE == 16
    with pytest.raises(ValueError, match="max_side"):
        load_image(DATA / "coffee.jpg", max_side=0)
    with pytest.raises(ValueError, match="background"):
        load_image(DATA / "coffee.jpg", background=(0, 0, 300))


def test_icc_profiles(tmp_path, caplog):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(tmp_path / "srgb.png", icc_profile=srgb)
    assert tuple(load_image(tmp_path / "srgb.png")[0, 0]) == (10, 20, 30)
    Image.new("RGB", (16, 16), (10, 20, 30)).save(tmp_path / "badicc.png", icc_profile=b"not a profile")
    with caplog.at_level(logging.WARNING, logger="studio.images"):
        assert tuple(load_image(tmp_path / "badicc.png")[0, 0]) == (10, 20, 30)
    assert "ICC profile not applied" in caplog.text


# ---------------------------------------------------------------- refused files


def test_missing_directory_empty(tmp_path):
    _refused(tmp_path / "ghost.png", "not found")
    d = tmp_path / "folder.jpg"
    d.mkdir()
    _refused(d, "directory")
    e = tmp_path / "empty.png"
    e.write_bytes(b"")
    _refused(e, "empty", "0 bytes")


@pytest.mark.parametrize(
    "ext,photo", [("jpg", "chelsea"), ("png", "chelsea"), ("webp", "chelsea"), ("webp", "coffee")]
)
def test_truncated_refused(tmp_path, ext, photo):
    src = Image.open(DATA / f"{photo}.jpg").convert("RGB")
    full = tmp_path / f"full.{ext}"
    src.save(full)
    cut = tmp_path / f"half.{ext}"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    msg = _refused(cut, "truncated")
    assert msg.startswith(f"{cut}: file is truncated"), msg  # our reason first, Pillow's text only after
    assert load_image(full).shape == src.size[::-1] + (3,)


def test_corrupt_bytes_refused(tmp_path):
    full = tmp_path / "ok.png"
    Image.open(DATA / "rocket.jpg").convert("RGB").resize((64, 48)).save(full)
    data = bytearray(full.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)
    bad = tmp_path / "smashed.png"
    bad.write_bytes(bytes(data))
    _refused(bad, "corrupt")
    header = tmp_path / "header.png"
    header.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    _refused(header, "corrupt")


def test_non_images_refused(tmp_path):
    txt = tmp_path / "notes.png"
    txt.write_text("hello, this is not a picture\n" * 20)
    _refused(txt, "not an image", "text")
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(200))
    _refused(mp4, "unsupported", "video")
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(3).integers(1, 256, 4096, dtype=np.uint8).tobytes())
    _refused(noise, "not an image")


@pytest.mark.parametrize("fmt,word", [("ICO", "ICO"), ("PCX", "PCX"), ("PDF", "PDF"), ("PPM", "PPM")])
def test_unsupported_formats_refused(tmp_path, fmt, word):
    p = tmp_path / f"thing.{fmt.lower()}"
    Image.new("RGB", (32, 32), RED).save(p, fmt)
    _refused(p, "unsupported", word)


def test_decompression_bomb_refused_without_decoding(tmp_path, monkeypatch):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # 2.5 gigapixels: Pillow's own guard would fire too, so also switch it off to prove ours works.
    _refused(_fake_png(tmp_path / "bomb.png", 50000, 50000), "too many pixels")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    _refused(_fake_png(tmp_path / "bomb2.png", 50000, 50000), "too many pixels", "2,500,000,000")
    # 108 MP: above our 100 MP limit, below Pillow's hard error (it would only warn).
    monkeypatch.undo()
    _refused(_fake_png(tmp_path / "bomb3.png", 12000, 9000), "too many pixels", "decompression bomb")
    _refused(_fake_png(tmp_path / "bomb4.png", 200, 200), "too many pixels", max_pixels=10_000)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 200_000  # a decode of 50000² RGB would need 7.5 GB
    # probe_image refuses from the header too
    with pytest.raises(ImageError, match="too many pixels"):
        probe_image(tmp_path / "bomb3.png")


def test_aspect_and_size_limits(tmp_path):
    _refused(_fake_png(tmp_path / "sliver.png", 10000, 10), "aspect ratio", "1000.0:1")
    Image.new("RGB", (2000, 100)).save(tmp_path / "strip.png")
    _refused(tmp_path / "strip.png", "aspect ratio", "20.0:1")
    Image.new("RGB", (8, 8)).save(tmp_path / "tiny.png")
    _refused(tmp_path / "tiny.png", "too small", "8x8")
    Image.new("RGB", (128, 16)).save(tmp_path / "edge.png")  # exactly 8:1 and 16 px: allowed
    assert load_image(tmp_path / "edge.png").shape == (16, 128, 3)
