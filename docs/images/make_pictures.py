"""Make the README's pictures from the example photos, with SYNTHESIZED weights.

    python docs/images/make_pictures.py            # needs the test extra (torch, transformers, timm)

The official weights are not available where this project is built, so the pictures use the test
suite's synthesized checkpoints (tests/synth.py, tests/synth_detr.py: the official architectures
and file layouts with random, calibrated weights). They show the mechanics — what the commands
draw and how — not what a trained model attends to. Every picture says so in its caption.
With the official weights, the same commands draw the real thing:

    refimpl classify examples/cat.png --cam cam.png
    refimpl detect examples/street.jpg --threshold 0.9 --draw boxes.png --attention attention.png
"""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
NOTE = "SYNTHESIZED weights (random, calibrated): the mechanics, not a trained model's focus"


def main():
    sys.path.insert(0, str(ROOT / "tests"))
    from refimpl.synth.resnet import build_resnet50
    from refimpl.synth.detr import build_detr

    from PIL import Image

    from refimpl.viz import attention_maps, cam
    from refimpl.api import load_detr, load_resnet50
    from refimpl.viz.draw import draw_detections

    with tempfile.TemporaryDirectory() as tmp:
        resnet = load_resnet50(build_resnet50(Path(tmp) / "resnet-50"))
        cam.save(cam.compute(resnet, ROOT / "examples" / "cat.png"), OUT / "cam-cat.png", note=NOTE)

        detr = load_detr(build_detr(Path(tmp) / "detr-resnet-50", "timm"))
        result = attention_maps.compute(detr, ROOT / "examples" / "street.jpg", threshold=0.9)
        attention_maps.save(result, OUT / "attention-street.png", note=NOTE)

        boxes = draw_detections(result.image, result.detections)  # what `refimpl detect --draw` writes
        boxes.thumbnail((640, 640))
        strip = cam.caption_strip(boxes.width, [f"refimpl detect --threshold 0.9 --draw: {len(result.detections)} boxes", NOTE],
                                  legend=False)
        picture = Image.new("RGB", (boxes.width, boxes.height + strip.height))
        picture.paste(boxes, (0, 0))
        picture.paste(strip, (0, boxes.height))
        picture.save(OUT / "boxes-street.png")
    for name in ("cam-cat.png", "attention-street.png", "boxes-street.png"):
        print(OUT / name)


if __name__ == "__main__":
    main()
