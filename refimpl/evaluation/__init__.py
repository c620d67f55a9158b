"""Whole datasets: accuracy and mAP as the model repositories report them (`refimpl evaluate`).

    >>> from refimpl.evaluation import evaluate
    >>> report = evaluate("val/", model="resnet-50", out="results.jsonl")          # ImageNet-style folder
    >>> report["metrics"]["top1"], report["metrics"]["top5"]
    >>> report = evaluate("val2017/", model="detr-resnet-50", annotations="instances_val2017.json")
    >>> report["metrics"]["AP"]                                                     # pycocotools COCOeval

One concept per module:
- data.py     what a dataset is: (name, path, label) items from an ImageNet-style folder, a labels
              CSV, COCO annotations or a Hugging Face dataset; class names and WordNet ids to
              class indices
- defaults.py workers, BLAS threads and batch by default (set from benchmarks/evaluate_workers.py)
- runner.py   images -> one JSON record per image in a resumable results file, on one process or
              `workers` processes (the same records either way)
- metrics.py  records -> top-1/top-5 (a direct count) or COCO AP (pycocotools' COCOeval, shared
              with the audits: refimpl.audit.coco_ap)

With `claimed=DIR` each record also holds audit-dir's record of the image's claimed response and
the report audit-dir's dataset statistics (refimpl.audit.folder: one code path).
"""

from refimpl.evaluation.runner import evaluate, format_report  # noqa: F401
