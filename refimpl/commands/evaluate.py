"""refimpl evaluate DATA --model M: accuracy (top-1/top-5) or COCO box AP over a whole dataset,
as the model repositories report them (timm's validate.py, torchvision's reference scripts,
DETR's main.py --eval with pycocotools).

Classification: DATA is an ImageNet-style folder (one subfolder per class, named by WordNet id
such as n01440764, by class index, or by label), or any folder with --labels FILE (CSV
file,label; label a class index or an id2label name), or a Hugging Face dataset (a save_to_disk
folder, an imagefolder, a hub name; image and label columns found by feature type). Detection: DATA is a folder of images and
--annotations a COCO instances_*.json, or a Hugging Face detection dataset (an Image column and
an objects column of bbox and category per object, boxes COCO [x, y, width, height] in pixels
unless --bbox-format xyxy; categories a ClassLabel or names), whose COCO ground truth is built in
memory; every query's detection is scored with pycocotools' COCOeval (pip install 'refimpl[evaluate]'). --claimed DIR audits a service's claimed responses
(DIR/NAME.json at each image's place) like audit-dir, with the dataset statistics.

One JSON line per image goes to --out (default DATA/evaluate-<model>.jsonl) as it is computed; a
rerun resumes (--restart starts over). --workers N processes compute, each with its own model
and --threads BLAS threads (defaults: refimpl/evaluation/defaults.py); the records are the same
for any number of workers. Exit status: 0 done, 2 on
usage errors, 130 when interrupted (rerun to resume)."""

import argparse

from .common import add_judging_options, add_model_options, judging_options, print_json


def register(sub):
    p = sub.add_parser("evaluate", help="top-1/top-5 or COCO AP over a dataset (JSONL, resumable, all cores)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA", help="the dataset folder, a Hugging Face save_to_disk folder or imagefolder, "
                                                "or a hub dataset name")
    add_model_options(p, "fast")
    p.add_argument("--annotations", metavar="ANN.json", help="COCO instances file (detection, with a folder of images; "
                                                               "a Hugging Face dataset has its own boxes)")
    p.add_argument("--labels", metavar="FILE", help="CSV file,label for a flat classification folder")
    hf = p.add_argument_group("Hugging Face datasets (pip install 'refimpl[evaluate]')")
    hf.add_argument("--format", dest="hf_format", choices=["disk", "imagefolder", "hub"],
                    help="read DATA with the datasets library: a save_to_disk folder, an imagefolder, or a hub name "
                         "(default: found from DATA: save_to_disk files, metadata.csv/.jsonl, or not a local path)")
    hf.add_argument("--split", help="the split of a dataset with several (default validation, val, test or the only one)")
    hf.add_argument("--image-column", metavar="NAME", help="the image column (default: the one Image feature)")
    hf.add_argument("--label-column", metavar="NAME", help="the label column (default: the one ClassLabel feature)")
    hf.add_argument("--objects-column", metavar="NAME",
                    help="detection: the objects column, bbox and category per object (default: the one with a bbox)")
    hf.add_argument("--bbox-format", choices=["xywh", "xyxy"],
                    help="detection: the dataset's boxes, COCO [x, y, width, height] (xywh, the default) or corners "
                         "[x0, y0, x1, y1] (xyxy), in pixels")
    p.add_argument("--out", metavar="RESULTS.jsonl", help="results file (default DATA/evaluate-<model>.jsonl)")
    p.add_argument("--restart", action="store_true", help="discard earlier results (of this tool) and start over")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate the first N images of the sorted dataset only")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes computing (default: refimpl/evaluation/defaults.py, one per core); the records are the same for any N")
    p.add_argument("--batch", type=int, metavar="B", help="images per forward (default: refimpl/evaluation/defaults.py)")
    p.add_argument("--threads", type=int, metavar="T",
                   help="BLAS threads per worker (default: refimpl/evaluation/defaults.py; part of the records' setup)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster: auto (the running one), local (start one here) or ray://HEAD:10001; "
                        "images are read by the workers from the same path (pip install 'refimpl[evaluate]')")
    p.add_argument("--claimed", metavar="DIR",
                   help="also audit claimed responses: DIR/NAME.json at each image's place (as audit-dir), "
                        "with the dataset statistics (agreement, score differences, confusion, claimed AP)")
    add_judging_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal anyway)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args):
    from refimpl.evaluation import evaluate, format_report

    for name in ("limit", "workers", "batch", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1")
    tol, accept = judging_options(args)
    report = evaluate(args.data, args.model.name, annotations=args.annotations, labels=args.labels, out=args.out,
                      limit=args.limit, workers=args.workers, batch=args.batch, threads=args.threads, ray=args.ray, restart=args.restart,
                      progress=not args.no_progress, weights=args.weights, revision=args.revision, dtype=args.dtype,
                      path=args.path, claimed=args.claimed, tolerances=tol, accept=accept, hf_format=args.hf_format,
                      split=args.split, image_column=args.image_column, label_column=args.label_column,
                      objects_column=args.objects_column, bbox_format=args.bbox_format)
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0
