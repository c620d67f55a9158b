"""refimpl detect IMAGE: objects as the hosted @cf/facebook/detr-resnet-50 returns them, as JSON:
[{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}], boxes in pixels of IMAGE, in query
order (transformers' post_process_object_detection order), scores strictly above --threshold.
--shape hosted gives the shape the hosted API was observed to return: every query, sorted by
score, integer corners (--wrap-uint16: negative corners wrapped to unsigned 16-bit)."""

import argparse
import math

from .common import add_weights_options, print_json


def _threshold(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


def register(sub):
    p = sub.add_parser("detect", help="detect objects with DETR-ResNet-50 (prints JSON)", description=__doc__)
    p.add_argument("image", help="image file (JPEG, PNG, WebP, GIF, BMP, TIFF)")
    add_weights_options(p, "REFIMPL_DETR_WEIGHTS")
    p.add_argument("--threshold", type=_threshold, default=None, metavar="T",
                   help="keep detections scoring strictly above this (default: 0.5, as transformers, "
                   "for --shape reference; none for --shape hosted)")
    p.add_argument("--shape", choices=["reference", "hosted"], default="reference",
                   help="reference (default): transformers' post-processing; hosted: all queries, "
                   "sorted by score, integer boxes")
    p.add_argument("--wrap-uint16", action="store_true",
                   help="with --shape hosted: wrap negative corners to unsigned 16-bit (-2 -> 65534)")
    p.add_argument("--draw", metavar="OUT.png", help="also write the image with labeled boxes to OUT.png")
    p.add_argument("--attention", metavar="OUT.png",
                   help="also write each detected object's decoder cross-attention over the image, next to "
                   "its box (last decoder layer, mean over heads; PNG)")
    p.set_defaults(func=run)


def run(args):
    from ..api import image_array, load_detr
    from ..contract import detect

    image = image_array(args.image)  # a bad image fails before 160 MB of weights are read
    model = load_detr(args.weights, args.revision, args.dtype)
    threshold = "auto" if args.threshold is None else args.threshold
    detections = detect(model, image, shape=args.shape, threshold=threshold, wrap_uint16=args.wrap_uint16)
    print_json(detections)
    if args.attention:
        from .. import attention_maps

        # A second, traced pass (the reference path) gives the attention weights; the JSON above
        # stays exactly what `detect` prints without --attention.
        attention_maps.save(attention_maps.compute(model, image, threshold=0.5 if args.threshold is None else args.threshold), args.attention)
    if args.draw:
        from ..draw import save_detections

        save_detections(args.draw, image, detections)
    return 0
