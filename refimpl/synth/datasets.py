"""Synthesized datasets for `refimpl evaluate`: images made from the example photos (random crops,
flips, resizes), labelled from a reference run of the model and then perturbed by known amounts,
so the metrics are neither trivial nor chosen by the code under test.

    python -m refimpl.synth.datasets classification OUT [--weights W] [--n 40] [--seed 0]
    python -m refimpl.synth.datasets detection OUT [--weights W] [--n 8] [--seed 0]

Classification: OUT/<class folder>/imgNNN.png (folder = WordNet id for 1000-class models, else
the class index) and OUT/labels.csv (`file,label` with the class's name), both describing the
same labels. Each image's label is, by a seeded draw, the model's top-1 class (about half), one
of its ranks 2-5 (a quarter) or a class outside its top 5 (a quarter): top-1 near 0.5, top-5
near 0.75.

Detection: OUT/images/imgNNN.png and OUT/instances.json (COCO). The ground truth of each image
is built from the model's most confident queries, then perturbed: every box jittered, some
relabelled to another category, some dropped, and some objects added that the model did not
find; AP lands well inside (0, 1).

Both write OUT/dataset.json describing how they were made. Use them to smoke-test a setup (with
the official weights the labels are the model's own answers, perturbed: the numbers say the
pipeline runs end to end, nothing about accuracy on real data). The example photos are
refimpl's examples/ (licenses in examples/LICENSES.md).
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from refimpl import registry
from refimpl.evaluation.data import imagenet_synsets
from refimpl.pipeline.decode import read_image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def source_photos(sources=None):
    folder = Path(sources) if sources else EXAMPLES
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        raise FileNotFoundError(f"no example photos (.jpg, .png) in {folder}")
    return [read_image(p)[1] for p in photos]


def variant(photo, rng, short_side=(48, 160)):
    """A random crop (60-100 % of each side), maybe mirrored, resized so its short side is in
    `short_side`: (H, W, 3) uint8 -> (H', W', 3) uint8."""
    h, w = photo.shape[:2]
    ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = photo[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    side = int(rng.integers(short_side[0], short_side[1] + 1))
    scale = side / min(ch, cw)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize(size, Image.BICUBIC))


def make_classification(out, model="resnet-50", weights=None, n=40, seed=0, sources=None):
    """Write a classification dataset of `n` images to `out` (see the module docstring); returns
    the description also written to out/dataset.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = registry.load(model, weights=weights)
    id2label = loaded.checkpoint.id2label
    folder_of = imagenet_synsets() if len(id2label) == 1000 else [str(i) for i in range(len(id2label))]
    rng = np.random.default_rng(seed)
    photos = source_photos(sources)
    rows, planned = [], {"top1": 0, "rank2to5": 0, "outside_top5": 0}
    for i in range(n):
        pixels = variant(photos[i % len(photos)], rng)
        logits = loaded.forward(loaded.preprocess([pixels]))[0]
        order = np.argsort(-logits, kind="stable")
        u = rng.random()
        if u < 0.5:
            label, how = int(order[0]), "top1"
        elif u < 0.75:
            label, how = int(order[int(rng.integers(1, 5))]), "rank2to5"
        else:
            label, how = int(order[int(rng.integers(5, len(order)))]), "outside_top5"
        planned[how] += 1
        name = f"{folder_of[label]}/img{i:03d}.png"
        (out / folder_of[label]).mkdir(exist_ok=True)
        Image.fromarray(pixels).save(out / name)
        # the class's name, unless the model has two classes of that name ("crane"): then its index
        unique = sum(1 for v in id2label.values() if v == id2label[label]) == 1
        rows.append((name, id2label[label] if unique else label))
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label"])
        writer.writerows(rows)
    about = {"task": "image-classification", "model": registry.get(model).hosted_name, "n_images": n, "seed": seed,
             "weights_sha256": loaded.checkpoint.sha256, "labels_drawn": planned,
             "how": "label = the model's top-1 (p=0.5), one of its ranks 2-5 (p=0.25) or a class outside its top 5 "
                    "(p=0.25), on the path " + loaded.path}
    (out / "dataset.json").write_text(json.dumps(about, indent=2) + "\n")
    return about


def make_detection(out, model="detr-resnet-50", weights=None, n=8, seed=0, sources=None, per_image=4):
    """Write a COCO detection dataset of `n` images to `out` (see the module docstring); returns
    the description also written to out/dataset.json."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    loaded = registry.load(model, weights=weights)
    id2label = loaded.checkpoint.id2label
    categories = [{"id": i, "name": name, "supercategory": "object"} for i, name in sorted(id2label.items())
                  if name != "N/A"]
    rng = np.random.default_rng(seed)
    photos = source_photos(sources)
    images, annotations, counts = [], [], {"kept": 0, "relabelled": 0, "dropped": 0, "added": 0}
    for i in range(n):
        pixels = variant(photos[i % len(photos)], rng, short_side=(160, 320))
        h, w = pixels.shape[:2]
        name = f"img{i:03d}.png"  # lossless: the ground truth was made from exactly these pixels
        Image.fromarray(pixels).save(out / "images" / name)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        detections = loaded.predict(pixels, shape="reference", threshold=None)[0]
        best = sorted((d for d in detections if d["label"] != "N/A"), key=lambda d: -d["score"])[:per_image]
        boxes = []
        for d in best:
            u = rng.random()
            if u < 0.15:
                counts["dropped"] += 1
                continue
            label = d["label"]
            if u < 0.3:
                label = categories[int(rng.integers(len(categories)))]["name"]
                counts["relabelled"] += 1
            else:
                counts["kept"] += 1
            boxes.append((label, jitter(d["box"], w, h, rng)))
        if rng.random() < 0.5:  # an object the model did not find
            x0, y0 = rng.uniform(0, 0.6) * w, rng.uniform(0, 0.6) * h
            boxes.append((categories[int(rng.integers(len(categories)))]["name"],
                          (x0, y0, rng.uniform(0.1, 0.4) * w, rng.uniform(0.1, 0.4) * h)))
            counts["added"] += 1
        ids = {c["name"]: c["id"] for c in categories}
        for label, (x, y, bw, bh) in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": ids[label],
                                "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
    coco = {"info": {"description": "synthesized by refimpl.synth.datasets from refimpl's example photos"},
            "images": images, "annotations": annotations, "categories": categories}
    (out / "instances.json").write_text(json.dumps(coco) + "\n")
    about = {"task": "object-detection", "model": registry.get(model).hosted_name, "n_images": n, "seed": seed,
             "weights_sha256": loaded.checkpoint.sha256, "ground_truth": counts,
             "how": f"ground truth = the model's {per_image} most confident queries per image, boxes jittered by up to "
                    "8 % of their size, 15 % dropped, 15 % relabelled, an unfound object added to half the images"}
    (out / "dataset.json").write_text(json.dumps(about, indent=2) + "\n")
    return about


def jitter(box, width, height, rng, amount=0.08):
    """Corners {"xmin", …} -> a COCO [x, y, w, h] moved and resized by up to `amount` of the box's
    size, clipped to the image."""
    bw, bh = box["xmax"] - box["xmin"], box["ymax"] - box["ymin"]
    x0 = box["xmin"] + rng.uniform(-amount, amount) * bw
    y0 = box["ymin"] + rng.uniform(-amount, amount) * bh
    x1 = box["xmax"] + rng.uniform(-amount, amount) * bw
    y1 = box["ymax"] + rng.uniform(-amount, amount) * bh
    x0, x1 = np.clip([x0, x1], 0, width)
    y0, y1 = np.clip([y0, y1], 0, height)
    return float(x0), float(y0), float(max(x1 - x0, 1.0)), float(max(y1 - y0, 1.0))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m refimpl.synth.datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["classification", "detection"])
    parser.add_argument("out", help="the folder to write")
    parser.add_argument("--model", help="the model (default resnet-50 / detr-resnet-50)")
    parser.add_argument("--weights", help="checkpoint folder or repo id (default: the model's usual source)")
    parser.add_argument("--n", type=int, help="number of images (default 40 / 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", help="folder of photos to make the images from (default refimpl's examples/)")
    args = parser.parse_args(argv)
    make = make_classification if args.task == "classification" else make_detection
    kwargs = {k: v for k, v in {"model": args.model, "n": args.n}.items() if v is not None}
    about = make(args.out, weights=args.weights, seed=args.seed, sources=args.sources, **kwargs)
    json.dump(about, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
