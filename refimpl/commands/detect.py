"""refimpl detect IMAGE: objects as the hosted @cf/facebook/detr-resnet-50 returns them, as JSON:
[{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}], boxes in pixels of IMAGE, in query
order (transformers' post_process_object_detection order), scores strictly above --threshold.
--shape hosted gives the shape the hosted API was observed to return: every query, sorted by
score, integer corners (--wrap-uint16: negative corners wrapped to unsigned 16-bit)."""

import argparse

from .common import add_model_argument, add_path_option, add_weights_options, print_json, require_task, threshold_type


def register(sub):
    p = sub.add_parser("detect", help="detect objects with a DETR (DETR-ResNet-50 by default; prints JSON)", description=__doc__)
    p.add_argument("image", help="image file (JPEG, PNG, WebP, GIF, BMP, TIFF)")
    add_model_argument(p, default="detr-resnet-50")
    add_weights_options(p)
    add_path_option(p, "fast")
    p.add_argument("--threshold", type=threshold_type, default=argparse.SUPPRESS, metavar="T|none",
                   help="keep detections scoring strictly above this (default: 0.5, as transformers, "
                   "for --shape reference; none, every query, for --shape hosted)")
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
    from refimpl import registry
    from refimpl.pipeline.loaded import image_array

    image = image_array(args.image)  # a bad image fails before 160 MB of weights are read
    spec = require_task(args.model, "object-detection", "detect")
    model = registry.load(spec, args.weights, args.revision, args.dtype, args.path)
    detections, options = model.predict(image, shape=args.shape, threshold=getattr(args, "threshold", "auto"), wrap_uint16=args.wrap_uint16)
    print_json(detections)
    if args.attention:
        from refimpl.viz import attention_maps

        # A second, traced pass on the same path gives the attention weights; the JSON above
        # stays exactly what `detect` prints without --attention.
        threshold = 0.5 if options["threshold"] is None else options["threshold"]
        attention_maps.save(attention_maps.compute(model, image, threshold=threshold), args.attention)
    if args.draw:
        from refimpl.viz.draw import save_detections

        save_detections(args.draw, image, detections)
    return 0
