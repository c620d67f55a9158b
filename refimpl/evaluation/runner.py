"""`refimpl evaluate`: a dataset -> one JSON record per image in a resumable results file -> metrics.

    >>> report = evaluate("val/", model="resnet-50", out="val.jsonl", workers=2)
    >>> report["metrics"]            # {"top1": …, "top5": …, "top1_correct": …, "top5_correct": …}

Records (one JSON line per image, `"record": "evaluate"`):
- classification: `label` (the true class index), `top5` (class indices, best first, ties by
  index) and `top5_scores` (their softmax probabilities);
- detection: `image_id` and `detections`, every query mapped to a COCO category
  (`{"category_id", "bbox": [x, y, w, h], "score"}`, pixels of the original image);
- both: `image`, `model` (hosted name), `task`, `weights_sha256`, `setup` (a digest of what else
  decides the answer: preprocessor config, dtype, path, batch), and `error` when refimpl refuses
  the image (it then counts as wrong / detects nothing). A resumed run refuses a file whose
  records were computed with other weights or another setup: they never mix.

Batches are fixed by dataset position (images 0..B-1, B..2B-1, … of the sorted dataset), whichever
process computes them and whether or not the run was interrupted, so a record never depends on how
the run was split: one process, N workers and a resumed run write the same records. A batch
whose records are not all in the file is computed again; only its missing records are written.

Workers are spawned processes, each loading the model once, reading its own images (memory is
bounded by workers × batch, not by the dataset) and running BLAS with `threads` threads (default
1, with one worker per core: the cores are not oversubscribed). The results file is written by
this process only.
"""

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from refimpl import registry
from refimpl.audit import folder as audit_dir
from refimpl.audit.results import Appender, open_results
from refimpl.audit.judge import Tolerances
from refimpl.errors import DatasetError, RefimplError, ResultsFileError
from refimpl.evaluation import data as datasets
from refimpl.evaluation import defaults
from refimpl.evaluation import metrics
from refimpl.models import ops
from refimpl.pipeline.loaded import image_array

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# Figures the model authors publish for their official weights, printed beside ours when the
# official weights are evaluated; keyed by the checkpoint's repository.
PUBLISHED = {
    "facebook/detr-resnet-50": {"AP": 0.420, "source": "DETR paper (Carion et al. 2020), Table 1, and the model card: "
                                                       "42.0 AP on COCO 2017 val"},
}


def is_evaluate_record(rec):
    return (rec.get("record") == "evaluate" and isinstance(rec.get("image"), str)
            and isinstance(rec.get("model"), str) and isinstance(rec.get("task"), str))


def evaluate(data, model="resnet-50", annotations=None, labels=None, out=None, limit=None, workers=None, batch=None,
             threads=None, ray=None, restart=False, progress=True, weights=None, revision=None, dtype="float32", path="fast",
             claimed=None, tolerances=None, accept=(), hf_format=None, split=None, image_column=None, label_column=None,
             objects_column=None, bbox_format=None):
    """Evaluate `model` on the dataset `data` (see refimpl.evaluation.data) -> the report (dict).

    out: the results file (default DATA/evaluate-<model>.jsonl); a rerun resumes it. limit: the
    first N images of the sorted dataset only. workers: processes computing; batch: images per
    forward; threads: BLAS threads per worker (their defaults: refimpl.evaluation.defaults). Records depend on batch and threads, never on workers.
    ray: None (this machine), or a Ray address ("auto": the running cluster, "local": start one
    here, "ray://head:10001"; a Ray already initialised in this process is used as it is):
    `workers` actors (default: the cluster's CPUs // threads) compute the same records.
    claimed: a folder of claimed responses, `NAME.json` at each image's place (`DIR/cls/img.json`
    for the image `cls/img.png`): each image's record also holds its audit-dir record (`audit`,
    judged with `tolerances` and `accept` as audit-dir judges) and the report the audits'
    dataset statistics (refimpl.audit.folder.statistics).
    hf_format, split, image_column, label_column: a Hugging Face `datasets` dataset as `data`
    (refimpl.evaluation.data.hf_items; the format is found from `data` unless given); for
    detection, objects_column and bbox_format ("xywh", the default, or "xyxy"): its boxes, from
    which the COCO ground truth is built (refimpl.evaluation.data.hf_detection_items)."""
    spec = registry.get(model)
    detection = spec.task == "object-detection"
    fmt = _dataset_format(spec, data, annotations, labels, hf_format, label_column, objects_column, bbox_format)
    loading = {"weights": weights, "revision": revision, "dtype": dtype, "path": path}
    loaded = spec.load(**loading)
    id2label = loaded.checkpoint.id2label
    coco = cats = source = None
    if fmt is not None and detection:
        items, source, coco = datasets.hf_detection_items(data, id2label, fmt, split, image_column, objects_column,
                                                          bbox_format or "xywh")
        cats = datasets.category_map(coco, id2label)
    elif fmt is not None:
        items, source = datasets.hf_items(data, id2label, fmt, split, image_column, label_column)
    elif detection:
        coco = datasets.read_coco(annotations)
        cats = datasets.category_map(coco, id2label)
        items = datasets.detection_items(data, coco)
    else:
        items = datasets.classification_items(data, id2label, labels)
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    # Batches are cut from the whole dataset, so --limit does not change any batch: the images of
    # a batch beyond the limit are computed with it and their records left for a later run.
    wanted = {item.name for item in items[:limit]}
    batch = int(batch or defaults.BATCH[spec.task])
    workers = int(workers or (0 if ray else defaults.workers()))
    threads = int(threads or defaults.THREADS)
    if min(batch, threads) < 1 or workers < (0 if ray else 1):
        raise ValueError("batch, workers and threads must be at least 1")
    if out is None and fmt == "hub":
        out = Path(f"evaluate-{str(data).replace('/', '--')}-{spec.name}.jsonl")
    out = Path(out) if out else Path(data) / f"evaluate-{spec.name}.jsonl"
    judged = None
    if claimed is not None:
        if not Path(claimed).is_dir():
            raise DatasetError(f"--claimed: no such folder: {claimed}")
        # the defaults spelled out: the setup of a run given them explicitly (the command line) is the same
        judged = {"claimed": str(Path(claimed).resolve()), "tolerances": tolerances or Tolerances(), "accept": list(accept)}
    setup = setup_digest(loaded, batch, threads, judged)
    records = _own_records(out, spec, loaded, setup, restart)
    done = {r["image"] for r in records}
    batches = [items[i:i + batch] for i in range(0, len(items), batch)]
    todo = [b for b in batches if any(item.name in wanted and item.name not in done for item in b)]
    job = {"model": spec.name, "loading": loading, "task": spec.task, "categories": cats, "judged": judged, "source": source,
           "weights_sha256": loaded.checkpoint.sha256, "setup": setup, "hosted_name": spec.hosted_name}
    stream = progress if hasattr(progress, "write") else sys.stderr
    bar = tqdm(total=len(wanted - done), file=stream, unit="image",
               disable=not progress or not _isatty(stream), smoothing=0.1)
    started = time.perf_counter()
    computed = 0
    try:
        with Appender(out) as f:
            compute = _compute_ray(todo, job, ray, workers, threads) if ray else _compute(todo, job, workers, threads)
            # closing: the workers (or the Ray instance this run started) stop now, also on an error
            # or Ctrl-C, not whenever the generator is collected
            with contextlib.closing(compute):
                for batch_records in compute:
                    for rec in batch_records:
                        if rec["image"] in wanted and rec["image"] not in done:
                            f.write(rec)
                            records.append(rec)
                            done.add(rec["image"])
                            computed += 1
                            bar.update(1)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    mine = sorted((r for r in records if r["image"] in wanted), key=lambda r: r["image"])
    if spec.task == "object-detection":
        found = metrics.coco_metrics(coco, mine)
    else:
        found = metrics.classification_metrics(mine)
    published = PUBLISHED.get(spec.repo_id)
    audits = [r["audit"] for r in mine if r.get("audit")] if judged else None
    return {
        "task": spec.task, "model": spec.hosted_name, "data": str(data), "n_images": len(mine),
        "metrics": found,
        "claimed": None if audits is None else {
            "folder": str(claimed), "judged_images": len(audits), "by_status": audit_dir.count_statuses(audits),
            "statistics": audit_dir.statistics(audits, coco)},
        "published": published, "official_weights": loaded.checkpoint.source == spec.repo_id,
        "weights_sha256": loaded.checkpoint.sha256, "path": path, "dtype": dtype,
        "errors": [{"image": r["image"], "error": r["error"]} for r in mine if r.get("error")],
        "out": str(out), "computed_now": computed, "workers": workers or None, "ray": ray, "threads": threads, "batch": batch,
        "seconds": round(elapsed, 3), "images_per_second": round(computed / elapsed, 3) if computed and elapsed else None,
        "compared": ("top-1/top-5: the true class against the first 1 / 5 classes of refimpl's logits"
                     if spec.task == "image-classification" else
                     "COCO bbox AP (pycocotools COCOeval) of every query's detection against the annotations"),
    }


def _dataset_format(spec, data, annotations, labels, hf_format, label_column, objects_column, bbox_format):
    """Which reader `data` needs (data.hf_format: a Hugging Face format, or None for a folder),
    and the options that do not fit it refused, before the model is loaded.

    Detection: with --annotations, `data` is a folder of images (an imagefolder's metadata file is
    then ignored: the annotation file says what is there); a save_to_disk folder carries its own
    boxes and is refused with it, as is --format (one ground truth, never two).
    Without --annotations, `data` must be a Hugging Face detection dataset."""
    detection = spec.task == "object-detection"
    fmt = datasets.hf_format(data, hf_format)
    if not detection:
        if annotations is not None:
            raise DatasetError(f"{spec.name} is a classifier: --annotations is for detection; use --labels or class folders")
        if objects_column is not None or bbox_format is not None:
            raise DatasetError(f"{spec.name} is a classifier: --objects-column and --bbox-format are for detection datasets")
        if fmt is not None and labels is not None:
            raise DatasetError("--labels is for a folder of images; a Hugging Face dataset has its own label column "
                               "(--label-column)")
        return fmt
    if label_column is not None:
        raise DatasetError(f"{spec.name} detects objects: --label-column is for classification; a detection dataset's "
                           "boxes and categories are in its objects column (--objects-column)")
    if annotations is not None:
        if hf_format is not None or fmt == "disk":  # (a "hub" name here is a folder that is not there)
            raise DatasetError(f"{data} is a Hugging Face dataset, which carries its own boxes (its objects column): "
                               "--annotations is for a folder of images; give one ground truth, not two")
        if bbox_format is not None:
            raise DatasetError("--bbox-format is for a Hugging Face dataset's boxes; a COCO annotation file's are "
                               "always [x, y, width, height]")
        return None
    if fmt is None:
        raise DatasetError(f"{spec.name} is evaluated against COCO annotations: pass --annotations instances.json, "
                           "or give a Hugging Face detection dataset (a save_to_disk folder, an imagefolder, a hub name)")
    return fmt


def setup_digest(loaded, batch, threads, judged=None):
    """What decides a record besides the weights and the image: the preprocessor config, the
    dtype, the path, the batch and the BLAS threads per worker (float32 sums may round
    differently in another batch shape or with another thread count); with claims, where they
    are and how they are judged (records with and without audits never mix)."""
    about = {"preprocessor": loaded.checkpoint.preprocessor, "dtype": np.dtype(loaded.dtype).name,
             "path": loaded.path, "batch": batch, "threads": threads}
    if judged is not None:
        about["judged"] = {"claimed": judged["claimed"], "accept": judged["accept"], "tolerances": repr(judged["tolerances"])}
    return hashlib.sha256(json.dumps(about, sort_keys=True).encode()).hexdigest()[:16]


def _own_records(out, spec, loaded, setup, restart):
    records = open_results(out, spec.hosted_name, restart, is_evaluate_record, "evaluate")
    for number, r in enumerate(records, 1):
        if r.get("weights_sha256") != loaded.checkpoint.sha256 or r["task"] != spec.task:
            raise ResultsFileError(f"{out} line {number} was computed with other weights (SHA-256 "
                                   f"{str(r.get('weights_sha256'))[:12]}…, not {loaded.checkpoint.sha256[:12]}…): "
                                   "refusing to mix them; it was left untouched (pass another --out, or --restart)")
        if r.get("setup") != setup:
            raise ResultsFileError(f"{out} line {number} was computed with another preprocessor config, dtype, path, "
                                   "batch size or thread count: refusing to mix them; it was left untouched (pass another --out, "
                                   "the same options, or --restart)")
    return records


# --- computing batches ------------------------------------------------------------------------------

def _compute(todo, job, workers, threads):
    """Yield each batch's records, computed by a pool of `workers` spawned processes with
    `threads` BLAS threads each. Always in workers, even for one: OpenBLAS rounds float32 sums
    differently with 1 and 2 threads (measured here: scores differ by ~2e-6 relative), so the
    records are the same for any number of workers only when every process uses the same
    number of threads; that number is part of the records' `setup`."""
    if not todo:
        return
    context = multiprocessing.get_context("spawn")  # a fresh interpreter reads the BLAS variables
    saved = {k: os.environ.get(k) for k in BLAS_THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in BLAS_THREAD_VARIABLES})
    try:
        pool = context.Pool(min(workers, len(todo)), initializer=_worker_init, initargs=(job,))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        # imap_unordered hands out one batch at a time: at most `workers` batches of images are
        # decoded at once, and records come back as soon as a batch is done.
        yield from pool.imap_unordered(_worker_run, todo, chunksize=1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _compute_ray(todo, job, address, workers, threads):
    """Yield each batch's records, computed by Ray actors: each loads the model once (never
    shipped per image) and reads its images from their absolute path, which must be shared by
    every node; its BLAS runs `threads` threads (the actor's runtime environment), as the local
    workers', so the records are the same."""
    try:
        import ray
    except ImportError:
        raise DatasetError("--ray needs ray: pip install 'refimpl[evaluate]' (or pip install ray)") from None
    started = not ray.is_initialized()
    if started and address == "local":  # a new Ray instance on this machine, for this run only
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    elif started:
        ray.init(address=address, log_to_driver=False)
    workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    env = {k: str(threads) for k in BLAS_THREAD_VARIABLES}
    actor = ray.remote(num_cpus=threads, runtime_env={"env_vars": env})(RayWorker)
    actors = [actor.remote(job) for _ in range(min(workers, len(todo)))]
    todo = [[item if item.path is None else dataclasses.replace(item, path=Path(item.path).resolve()) for item in b]
            for b in todo]
    pending, owner, queue = [], {}, list(reversed(todo))
    try:
        for a in actors:  # two batches in flight per actor: one computing, one waiting
            for _ in range(2):
                if queue:
                    ref = a.run.remote(queue.pop())
                    pending.append(ref)
                    owner[ref] = a
        while pending:
            [ref], pending = ray.wait(pending, num_returns=1)
            a = owner.pop(ref)
            if queue:
                nxt = a.run.remote(queue.pop())
                pending.append(nxt)
                owner[nxt] = a
            yield ray.get(ref)
    finally:
        for a in actors:
            ray.kill(a)
        if started:  # a local instance stops with it (a cluster's only forgets this driver)
            ray.shutdown()


class RayWorker:
    """A Ray actor (see `_compute_ray`): the model, loaded once."""

    def __init__(self, job):
        self.job = job
        self.model = audit_dir.judging_model(job["model"], **job["loading"])

    def run(self, batch):
        return run_batch(self.model, self.job, batch)


_WORKER = {}


def _worker_init(job):
    _WORKER["job"] = job
    _WORKER["model"] = audit_dir.judging_model(job["model"], **job["loading"])


def _worker_run(batch):
    return run_batch(_WORKER["model"], _WORKER["job"], batch)


def run_batch(loaded, job, batch):
    """The records of one batch of `datasets.Item`s."""
    base = {"record": "evaluate", "model": job["hosted_name"], "task": job["task"],
            "weights_sha256": job["weights_sha256"], "setup": job["setup"]}
    images, records = [], []
    for item in batch:
        rec = dict(base, image=item.name)
        try:
            images.append((rec, image_array(datasets.encoded_image(item, job.get("source")))))
        except (OSError, RefimplError) as e:
            rec["error"] = f"{type(e).__name__}: {e}"
        records.append(rec)
    if job["task"] == "image-classification":
        for rec, item in zip(records, batch):
            rec.update(label=item.label, top5=[], top5_scores=[])
        if images:
            logits = loaded.forward(loaded.preprocess([pixels for _, pixels in images]))
            for (rec, _), row in zip(images, logits):
                rec["top5"], rec["top5_scores"] = top5(row)
    else:
        for rec, item in zip(records, batch):
            rec.update(image_id=item.label, detections=[])
        for rec, pixels in images:  # one image per forward: DETR's padding would change the answer
            detections = loaded.predict(pixels, shape="reference", threshold=None)[0]
            rec["detections"] = coco_detections(detections, job["categories"])
    if job.get("judged"):
        j = job["judged"]
        for rec, item in zip(records, batch):
            claim = Path(j["claimed"]) / Path(item.name).with_suffix(".json")
            rec["audit"] = audit_dir.audit_record(datasets.encoded_image(item, job.get("source")), job["model"], claim, item.name, j["tolerances"], j["accept"],
                                                  **job["loading"])
    return records


def top5(logits):
    """logits (num_labels,) -> (the 5 best class indices, their softmax probabilities), ordered as
    the contract's top-k (refimpl.pipeline.postprocess.top_k: stable, ties by class index)."""
    probs = ops.softmax(logits)
    order = np.argsort(-probs, kind="stable")[:5]
    return [int(i) for i in order], [float(probs[i]) for i in order]


def coco_detections(detections, categories):
    """One image's detections for every query (refimpl's reference shape, threshold None: what
    DETR's own evaluation scores) -> COCO results: `label` -> its category id (by name), box
    corners -> [x, y, width, height] in the original image's pixels. Queries whose class is not
    an annotated category are left out (COCOeval would ignore them)."""
    out = []
    for d in detections:
        category = categories.get(d["label"])
        if category is None:
            continue
        b = d["box"]
        out.append({"category_id": category, "bbox": [b["xmin"], b["ymin"], b["xmax"] - b["xmin"], b["ymax"] - b["ymin"]],
                    "score": d["score"]})
    return out


# --- the report ---------------------------------------------------------------------------------------

def format_report(report):
    m = report["metrics"]
    lines = [f"evaluate {report['data']}: {report['model']} on {report['n_images']} image(s), {report['path']} path, "
             f"{report['dtype']} (results: {report['out']})"]
    if report["task"] == "image-classification":
        lines.append(f"  top-1 {_pct(m['top1'])} ({m['top1_correct']}/{report['n_images']})   "
                     f"top-5 {_pct(m['top5'])} ({m['top5_correct']}/{report['n_images']})")
    else:
        lines.append("  " + "  ".join(f"{k} {_num(m[k])}" for k in metrics.COCO_STATS[:6]))
        lines.append("  " + "  ".join(f"{k} {_num(m[k])}" for k in metrics.COCO_STATS[6:]))
    if report["published"]:
        which = "these are the official weights" if report["official_weights"] else "not these weights"
        figures = ", ".join(f"{k} {v}" for k, v in report["published"].items() if k != "source")
        lines.append(f"  published for the official weights: {figures} ({report['published']['source']}; {which})")
    if report.get("claimed"):
        c = report["claimed"]
        lines.append(f"  claimed responses ({c['folder']}), {c['judged_images']} image(s) audited: "
                     + (", ".join(f"{k}: {v}" for k, v in c["by_status"].items()) or "none"))
        lines += audit_dir.format_statistics(c["statistics"])
    if report["errors"]:
        lines.append(f"  {len(report['errors'])} image(s) refimpl refuses (counted as wrong / no detection), "
                     f"e.g. {report['errors'][0]['image']}: {report['errors'][0]['error']}")
    if report["computed_now"]:
        lines.append(f"  computed now: {report['computed_now']} image(s) in {report['seconds']:.1f} s "
                     f"({report['images_per_second']:.2f} images/s, {report['workers'] or 'Ray'} worker(s) x {report['threads']} thread(s), "
                     f"batch {report['batch']})")
    lines.append(f"  compared: {report['compared']}")
    return "\n".join(lines)


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _num(x):
    return "n/a" if x is None else f"{x:.3f}"


def _isatty(stream):
    return hasattr(stream, "isatty") and stream.isatty()
