"""refimpl classify IMAGE: top-k ImageNet classes as the hosted @cf/microsoft/resnet-50 returns them."""

from .common import add_model_argument, add_path_option, add_weights_options, print_json, require_task


def register(sub):
    p = sub.add_parser("classify", help="classify an image with a ResNet (ResNet-50 by default; prints JSON)", description=__doc__)
    p.add_argument("image", help="image file (JPEG, PNG, WebP, GIF, BMP, TIFF)")
    add_model_argument(p, default="resnet-50")
    add_weights_options(p)
    add_path_option(p, "fast")
    p.add_argument("--top-k", type=int, default=5, help="number of classes (default 5)")
    p.add_argument("--labels", choices=["seed", "raw"], default="seed",
                   help="seed: 'PERSIAN CAT' (hosted API style, default); raw: config.json id2label text")
    p.add_argument("--cam", metavar="OUT.png",
                   help="also write the class activation map of the top class over the image (PNG)")
    p.set_defaults(func=run)


def run(args):
    from refimpl import registry
    from refimpl.pipeline.loaded import image_array

    image = image_array(args.image)  # a bad image is refused before 100 MB of weights are read
    spec = require_task(args.model, "image-classification", "classify")
    model = registry.load(spec, args.weights, args.revision, args.dtype, args.path)
    print_json(model(image, top_k=args.top_k, labels=args.labels))
    if args.cam:
        from refimpl.viz import cam

        # A second, traced pass on the same path gives the last feature map; the JSON above
        # stays exactly what `classify` prints without --cam.
        cam.save(cam.compute(model, image, labels=args.labels), args.cam)
    return 0
