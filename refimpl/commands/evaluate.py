"""refimpl evaluate DATA --model M: accuracy (top-1/top-5) or COCO box AP over a whole dataset,
as the model repositories report them (timm's validate.py, torchvision's reference scripts,
DETR's main.py --eval with pycocotools).

Classification: DATA is an ImageNet-style folder (one subfolder per class, named by WordNet id
such as n01440764, by class index, or by label), or any folder with --labels FILE (CSV
file,label; label a class index or an id2label name). Detection: DATA is a folder of images and
--annotations a COCO instances_*.json; every query's detection is scored with pycocotools'
COCOeval (pip install 'refimpl[evaluate]'). --claimed DIR audits a service's claimed responses
(DIR/NAME.json at each image's place) like audit-dir, with the dataset statistics.

One JSON line per image goes to --out (default DATA/evaluate-<model>.jsonl) as it is computed; a
rerun resumes (--restart starts over). --workers N (default: one per core) processes compute,
each with its own model and --threads BLAS threads (default 1); the records are the same for
any number of workers. Exit status: 0 done, 2 on
usage errors, 130 when interrupted (rerun to resume)."""

import argparse

from .common import add_judging_options, add_model_options, judging_options, print_json


def register(sub):
    p = sub.add_parser("evaluate", help="top-1/top-5 or COCO AP over a dataset (JSONL, resumable, all cores)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA", help="the dataset folder")
    add_model_options(p, "fast")
    p.add_argument("--annotations", metavar="ANN.json", help="COCO instances file (detection)")
    p.add_argument("--labels", metavar="FILE", help="CSV file,label for a flat classification folder")
    p.add_argument("--out", metavar="RESULTS.jsonl", help="results file (default DATA/evaluate-<model>.jsonl)")
    p.add_argument("--restart", action="store_true", help="discard earlier results (of this tool) and start over")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate the first N images of the sorted dataset only")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes computing (default: one per core); the records are the same for any N")
    p.add_argument("--batch", type=int, metavar="B", help="images per forward (default 8 classification, 1 detection)")
    p.add_argument("--threads", type=int, metavar="T", help="BLAS threads per worker (default 1; part of the records' setup)")
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
                      path=args.path, claimed=args.claimed, tolerances=tol, accept=accept)
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0
