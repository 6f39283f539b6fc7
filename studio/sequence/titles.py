"""Title cards: centred text on a colour or over a (dimmed) frame, drawn with Pillow's own font.

No font files ship: `ImageFont.load_default(size=...)` is a scalable font in Pillow ≥ 10.1.
"""

from __future__ import annotations

import numpy as np

from .spec import parse_color


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def wrap_text(text: str, font, max_width: float) -> list[str]:
    """Greedy word wrap of `text` (existing line breaks kept) to lines at most `max_width` wide."""
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        words = para.split()
        line = ""
        for word in words:
            trial = f"{line} {word}".strip()
            if line and font.getlength(trial) > max_width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def default_font_size(height: int) -> int:
    """The font size used when a title gives none: a twelfth of the frame height."""
    return max(8, height // 12)


def render_title(text: str, width: int, height: int, *, font_size: int | None = None,
                 color: str = "#ffffff", background: str = "#000000",
                 frame: np.ndarray | None = None, dim: float = 0.4) -> np.ndarray:
    """A title card as an RGB uint8 height×width×3 frame.

    Text is wrapped to 90 % of the width and centred.  With `frame` (already width×height) the
    text sits on that frame darkened by `dim` (0 = unchanged, 1 = black) instead of `background`.
    """
    from PIL import Image, ImageDraw

    if frame is not None:
        if frame.shape[:2] != (height, width):
            raise ValueError(f"title frame shape={frame.shape} must be {height}×{width}")
        base = np.clip(np.rint(frame.astype(np.float32) * (1.0 - dim)), 0, 255).astype(np.uint8)
        img = Image.fromarray(base)
    else:
        img = Image.new("RGB", (width, height), parse_color(background, "background"))
    size = font_size or default_font_size(height)
    font = _font(size)
    lines = wrap_text(text, font, 0.9 * width)
    draw = ImageDraw.Draw(img)
    spacing = max(2, size // 4)
    draw.multiline_text((width / 2, height / 2), "\n".join(lines), font=font, anchor="mm",
                        align="center", spacing=spacing, fill=parse_color(color, "color"))
    return np.asarray(img, dtype=np.uint8).copy()
