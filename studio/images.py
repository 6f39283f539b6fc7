"""Load and validate input images: one RGB uint8 array out, or an `ImageError` naming file and reason.

Accepted formats are in `ACCEPTED_FORMATS` (PNG, JPEG, WebP, BMP, TIFF, plus GIF for its first frame).
Awkward but valid images are normalised: EXIF orientation is applied, alpha is flattened over
`BACKGROUND` (white), CMYK / 16-bit / 1-bit / palette / YCbCr / float images become 8-bit RGB, the first
frame of an animation is taken, and images longer than `max_side` are downscaled (logged).

Everything else is refused *before* decoding where possible: missing or empty files, truncated or corrupt
data (Pillow's `LOAD_TRUNCATED_IMAGES` is never set here), non-images, decompression bombs (our own
`PIXEL_LIMIT`, checked from the header), absurd aspect ratios and tiny images.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF", "GIF")
"""Pillow format names we accept (MPO is the multi-picture JPEG some cameras write; JPEG opens it)."""
_OPEN_FORMATS = tuple(f for f in ACCEPTED_FORMATS if f != "MPO")
PIXEL_LIMIT = 100_000_000
"""Largest width × height we agree to decode (decompression-bomb guard), checked from the header."""
MAX_SIDE = 4096
"""Default longest side after loading; larger images are downscaled with Lanczos."""
MAX_ASPECT = 8.0
"""Largest allowed long-side / short-side ratio."""
MIN_SIDE = 16
"""Smallest allowed width or height, in pixels."""
BACKGROUND: tuple[int, int, int] = (255, 255, 255)
"""Colour that transparent pixels are flattened over (white)."""

_HASH_CHUNK = 1 << 20


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and what is wrong."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _check_file(path: str | os.PathLike[str]) -> Path:
    """Return `path` as a Path if it is a non-empty regular file, else raise `ImageError`."""
    p = Path(path)
    if not p.exists():
        raise ImageError(p, "file not found")
    if p.is_dir():
        raise ImageError(p, "is a directory, not an image file")
    if not p.is_file():
        raise ImageError(p, "is not a regular file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise ImageError(p, f"cannot read file ({e.strerror or e})") from e
    if size == 0:
        raise ImageError(p, "file is empty (0 bytes)")
    return p


def _sniff(head: bytes) -> str | None:
    """Name a few common non-image or unsupported file kinds from their first bytes."""
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "a HEIC/HEIF image"
        if brand in (b"avif", b"avis"):
            return "an AVIF image"
        return "a video/ISO media file (ftyp box), not a still image"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "a Matroska/WebM video"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "an AVI video"
    if head[:2] == b"PK":
        return "a ZIP archive"
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in head:
        return "an SVG drawing (vector images are not supported)"
    if head and b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "a text file"
    return None


def _identify_unsupported(p: Path) -> str:
    """Explain why a file did not open as an accepted format (header reads only, nothing decoded)."""
    with p.open("rb") as f:
        head = f.read(64)
    kind = _sniff(head)
    if kind is not None and "text" not in kind:
        return f"unsupported format: {kind}; accepted: {', '.join(_public_formats())}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(p) as other:
                fmt = other.format
    except Exception:  # any failure here just means "not an image we know"
        fmt = None
    if fmt:
        return f"unsupported format {fmt}; accepted: {', '.join(_public_formats())}"
    if kind is not None:
        return f"not an image ({kind})"
    return "not an image, or corrupt beyond recognition (no known image header)"


def _public_formats() -> list[str]:
    return [f for f in ACCEPTED_FORMATS if f != "MPO"]


def _riff_truncated(p: Path) -> bool:
    """True if a RIFF (WebP) file is shorter than its own header says."""
    with p.open("rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF":
        return False
    declared = int.from_bytes(head[4:8], "little") + 8
    return p.stat().st_size < declared


def _open(p: Path) -> Image.Image:
    """Open `p` (header only) restricted to `ACCEPTED_FORMATS`; errors become `ImageError`."""
    try:
        with warnings.catch_warnings():
            # Our own PIXEL_LIMIT is checked right after; Pillow's warning threshold is its global.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(p, formats=_OPEN_FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageError(p, f"too many pixels, refused as a possible decompression bomb ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageError(p, _identify_unsupported(p)) from e
    except Exception as e:  # Pillow raises many types (SyntaxError, struct.error, ...)
        if _riff_truncated(p):
            raise ImageError(p, f"file is truncated (shorter than its RIFF header says: {e})") from e
        raise ImageError(p, f"corrupt image header ({type(e).__name__}: {e})") from e


def _check_header(p: Path, im: Image.Image, *, max_pixels: int, max_aspect: float, min_side: int) -> None:
    """Refuse by the header's size alone: pixel limit, aspect ratio, minimum side."""
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(
            p,
            f"too many pixels: {w}x{h} = {w * h:,} exceeds the limit of {max_pixels:,} "
            "(refused as a possible decompression bomb)",
        )
    aspect = max(w, h) / max(1, min(w, h))
    if aspect > max_aspect:
        raise ImageError(p, f"aspect ratio {aspect:.1f}:1 ({w}x{h}) is beyond the allowed {max_aspect:g}:1")
    if min(w, h) < min_side:
        raise ImageError(p, f"image too small: {w}x{h}, each side must be at least {min_side} px")


def _frame_count(im: Image.Image) -> int:
    """Number of frames (GIF/APNG/WebP/TIFF pages); 1 if counting fails on damaged later frames."""
    try:
        return int(getattr(im, "n_frames", 1))
    except Exception:  # only the first frame is used, so a broken tail is not fatal here
        return 1


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # broken EXIF blocks are common; orientation is then unknown
        return 1


def probe_image(
    path: str | os.PathLike[str],
    *,
    validate: bool = True,
    max_pixels: int = PIXEL_LIMIT,
) -> dict[str, Any]:
    """Describe an image from its header without decoding pixels.

    Returns `format`, `size` (w, h as stored), `display_size` (after EXIF orientation), `mode`,
    `frames`, `orientation`, `has_alpha` and `bytes`. With `validate` the same header checks as
    `load_image` run first (format, pixel limit, minimum side, aspect), raising `ImageError`.
    """
    p = _check_file(path)
    with _open(p) as im:
        if validate:
            _check_header(p, im, max_pixels=max_pixels, max_aspect=MAX_ASPECT, min_side=MIN_SIDE)
        orient = _orientation(im)
        w, h = im.size
        return {
            "format": im.format,
            "size": (w, h),
            "display_size": (h, w) if orient in (5, 6, 7, 8) else (w, h),
            "mode": im.mode,
            "frames": _frame_count(im),
            "orientation": orient,
            "has_alpha": "A" in im.getbands() or "transparency" in im.info,
            "bytes": p.stat().st_size,
        }


def image_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file's bytes (for manifests and caches)."""
    p = _check_file(path)
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _scale16(a: np.ndarray) -> np.ndarray:
    """Map 0..65535 to 0..255 with rounding (65535 -> 255, 32768 -> 128), not clipping."""
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _gray_to_u8(p: Path, im: Image.Image) -> np.ndarray:
    """Convert high-bit-depth single-band images (I;16*, I, F) to uint8 gray, scaling not clipping."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        return _scale16(a)
    if im.mode == "I":
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 65535:
            return _scale16(a)
        log.warning("%s: 32-bit integer image with range %d..%d; stretched to 0..255", p, lo, hi)
        return _stretch(a.astype(np.float64), lo, hi)
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 1.0:
        return np.rint(a * 255.0).astype(np.uint8)
    log.warning("%s: float image with range %g..%g; stretched to 0..255", p, lo, hi)
    return _stretch(a, lo, hi)


def _stretch(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _flatten(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Composite straight-alpha RGBA (uint8) over a solid background, rounding to uint8."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, np.float32)
    out = rgba[..., :3].astype(np.float32) * alpha + bg * (1.0 - alpha)
    return np.rint(out).astype(np.uint8)


def _icc_to_srgb(p: Path, im: Image.Image) -> Image.Image | None:
    """Convert via an embedded ICC profile to sRGB; None if there is none or it fails (logged)."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "CMYK"):
        return None
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        desc = (ImageCms.getProfileDescription(src) or "").strip()
        if im.mode == "RGB" and "sRGB" in desc:
            return None
        dst = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
    except Exception as e:  # a broken profile must not block loading
        log.warning("%s: embedded ICC profile not applied (%s); using plain conversion", p, e)
        return None


def _to_rgb(p: Path, im: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """Any Pillow mode to contiguous RGB uint8 H×W×3, alpha flattened over `background`."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        g = _gray_to_u8(p, im)
        return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
    if mode == "1":
        im = im.convert("L")
        mode = "L"
    if mode in ("RGBa", "La"):  # premultiplied: un-premultiply first
        im = im.convert("RGBA")
        mode = "RGBA"
    has_alpha = "A" in im.getbands() or "transparency" in im.info
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        return np.ascontiguousarray(_flatten(rgba, background))
    managed = _icc_to_srgb(p, im)
    if managed is not None:
        im = managed
    elif mode == "LAB":
        lab = ImageCms.createProfile("LAB")
        im = ImageCms.profileToProfile(im, lab, ImageCms.createProfile("sRGB"), outputMode="RGB")
    elif mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _target_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def load_image(
    path: str | os.PathLike[str],
    *,
    max_side: int = MAX_SIDE,
    max_pixels: int = PIXEL_LIMIT,
    max_aspect: float = MAX_ASPECT,
    min_side: int = MIN_SIDE,
    background: tuple[int, int, int] = BACKGROUND,
) -> np.ndarray:
    """Load `path` as a contiguous RGB uint8 H×W×3 array, or raise `ImageError` saying why not.

    The header is validated before decoding (format, `max_pixels`, `min_side`, `max_aspect`); the
    file is then decoded in full (truncated data is refused), EXIF-oriented, converted to RGB with
    alpha flattened over `background`, and downscaled with Lanczos so the longest side is at most
    `max_side` (logged). Only the first frame of an animation is used.
    """
    if not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"max_side must be a positive int, got {max_side!r}")
    if not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    if not (max_aspect >= 1.0):
        raise ValueError(f"max_aspect must be >= 1, got {max_aspect!r}")
    if len(background) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in background):
        raise ValueError(f"background must be three ints in 0..255, got {background!r}")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set by someone; truncated files may load")

    p = _check_file(path)
    with _open(p) as im:
        _check_header(p, im, max_pixels=max_pixels, max_aspect=max_aspect, min_side=min_side)
        fmt, (w0, h0) = im.format, im.size
        frames = _frame_count(im)
        if frames > 1:
            log.info("%s: %s with %d frames; using the first", p, fmt, frames)
        if fmt in ("JPEG", "MPO") and max(w0, h0) > max_side:
            # DCT-domain downscale (1/2, 1/4, 1/8) while decoding; never below the target size.
            im.draft(None, _target_size(w0, h0, max_side))
        try:
            im.load()
        except Exception as e:  # wrap every decoder failure
            text = str(e)
            if "truncated" in text or _riff_truncated(p):
                reason = f"file is truncated (incomplete image data: {text})"
            else:
                reason = f"corrupt image data ({type(e).__name__}: {text})"
            raise ImageError(p, reason) from e
        try:
            oriented = ImageOps.exif_transpose(im)
        except Exception as e:  # broken EXIF: keep stored orientation, say so
            log.warning("%s: EXIF orientation not applied (%s)", p, e)
            oriented = im
        try:
            rgb = _to_rgb(p, oriented, background)
        except Exception as e:  # unusual modes that Pillow cannot convert
            raise ImageError(p, f"unsupported pixel mode {im.mode} ({e})") from e

    h, w = rgb.shape[:2]
    if max(w, h) > max_side:
        tw, th = _target_size(w, h, max_side)
        small = Image.fromarray(rgb).resize((tw, th), Image.Resampling.LANCZOS, reducing_gap=3.0)
        rgb = np.ascontiguousarray(np.asarray(small, dtype=np.uint8))
        log.info("%s: downscaled %dx%d -> %dx%d (max_side=%d)", p, w0, h0, tw, th, max_side)
    elif (w, h) != (w0, h0) and (h, w) != (w0, h0):
        log.info("%s: decoded at reduced size %dx%d from %dx%d", p, w, h, w0, h0)
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    return rgb
