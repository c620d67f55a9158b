"""Draw detections on their image: one colored box per detection, labeled "label 0.97" on a
filled tab, with Pillow's ImageDraw and Pillow's default font.

Each label keeps its color (a fixed palette indexed by a hash of the label text), so two
people are the same color in every picture; the text is black or white, whichever reads better
on the tab. Boxes are drawn from the lowest score to the highest, so the most confident box is
on top where boxes overlap.
"""

import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Tableau's 10 categorical colors, plus a few more for variety.
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (255, 215, 0), (0, 128, 128),
)


def color_for(label):
    """A stable color for a label (the same in every run: crc32, not Python's salted hash)."""
    return PALETTE[zlib.crc32(label.encode("utf-8")) % len(PALETTE)]


def _text_color(rgb):
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def _font(image_height):
    """Pillow's default font, scaled with the image when Pillow has FreeType (else its bitmap font)."""
    size = max(11, round(image_height / 45))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):  # old Pillow or no FreeType
        return ImageFont.load_default()


def draw_detections(image, detections):
    """image: (H, W, 3) uint8 array or a PIL image; detections: [{"score", "label", "box"}] with
    boxes in the image's pixels -> a new RGB PIL image with the boxes drawn."""
    canvas = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    canvas = canvas.copy()
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    font = _font(height)
    line = max(2, round(min(width, height) / 250))
    for det in sorted(detections, key=lambda d: d["score"]):
        box = det["box"]
        x0, y0, x1, y1 = (float(box[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        color = color_for(det["label"])
        draw.rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=color, width=line)

        text = f"{det['label']} {det['score']:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tab_w, tab_h = right - left + 2 * line, bottom - top + 2 * line
        # The tab sits on the box's top edge, inside the picture: above the box if there is room,
        # else just inside it; shifted left if it would run past the right border.
        tx = min(max(x0, 0), max(width - tab_w, 0))
        ty = y0 - tab_h if y0 - tab_h >= 0 else max(y0, 0)
        ty = min(ty, max(height - tab_h, 0))
        draw.rectangle([tx, ty, tx + tab_w, ty + tab_h], fill=color)
        draw.text((tx + line - left, ty + line - top), text, fill=_text_color(color), font=font)
    return canvas


def save_detections(path, image, detections):
    """Draw and write the picture (the format follows the file name, e.g. .png)."""
    draw_detections(image, detections).save(path)
    return path
