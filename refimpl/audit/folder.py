"""Audit a folder: every image against its claimed response (NAME.json beside NAME.jpg), one JSON
line per image in a results file, resumable.

    >>> from refimpl.audit.folder import audit_dir
    >>> summary = audit_dir("photos/", model="detr-resnet-50")   # photos/NAME.json beside NAME.jpg

Each image is judged by `refimpl.audit.image.audit`; see there for the verdicts.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from refimpl import registry
from refimpl.audit import coco_ap
from refimpl.audit import judge as judging
from refimpl.audit.judge import vocabulary
from refimpl.audit.image import AuditResult, _contract_output, audit, read_claimed
from refimpl.audit.results import Appender, open_results
from refimpl.errors import DatasetError, RefimplError, ResultsFileError, WeightsError
from refimpl.provenance import sha256_bytes
from refimpl.serving import contract

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def find_images(folder):
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def audit_dir(folder, model="resnet-50", out=None, tolerances=None, accept=(), restart=False, limit=None,
              progress=True, weights=None, revision=None, dtype="float32", path="fast", annotations=None):
    """Audit every image of `folder` against its claimed response `NAME.json` (when present).

    Results go to `out` (default FOLDER/audit.jsonl), one JSON line per image, written as each
    image is done; a rerun skips the images already in the file (resume), `restart=True` starts
    over. `limit`: audit at most this many new images in this run. `annotations`: a COCO
    instances file of the images (detection): both services' AP against it in the statistics.
    Returns the summary (dict) of every record in `out`."""
    folder = Path(folder)
    coco = coco_ap.read_coco(annotations) if annotations is not None else None
    name = registry.get(model).hosted_name
    out = Path(out) if out else folder / "audit.jsonl"
    images = find_images(folder)
    records = open_results(out, name, restart)
    done = {r["image"] for r in records}
    todo = [p for p in images if p.name not in done]
    if limit is not None:
        todo = todo[:limit]
    stream = progress if hasattr(progress, "write") else sys.stderr
    # tqdm redraws in place on a terminal and stays quiet elsewhere (logs, CI, pipes).
    bar = tqdm(total=len(todo), file=stream, unit="image", disable=not progress or not _isatty(stream))
    loading = {"weights": weights, "revision": revision, "dtype": dtype, "path": path}
    try:
        with Appender(out) as f:
            for image in todo:
                rec = _audit_one(image, name, tolerances, accept, loading)
                f.write(rec)
                records.append(rec)
                bar.set_postfix_str(f"{image.name}: {rec['status']}", refresh=False)
                bar.update(1)
    finally:
        bar.close()
    return summarize(records, images, folder, out, len(todo), coco)


def _audit_one(image, name, tolerances, accept, loading, claim=None, label=None):
    """One image's audit record: `claim` (default NAME.json beside the image) judged against
    refimpl's reference, or the reference alone when there is no claim. `label`: how the image
    is named in the record (default its file name). Detection records also keep the claimed
    detections (`claimed_result`), which the dataset's AP is computed from (`claimed_ap`)."""
    claim = Path(claim) if claim is not None else image.with_suffix(".json")
    label = label or image.name
    try:
        if claim.is_file():
            rec = audit(image, claim, name, tolerances, accept, **loading).to_dict()
            rec["claimed"] = claim.name
            if registry.get(name).task == "object-detection":
                rec["claimed_result"] = _claimed_result(claim)
        else:
            data = bytes(image) if isinstance(image, (bytes, bytearray)) else image.read_bytes()
            try:
                reference, _ = judging.reference(name, data, top_k=5, **loading)
                reference = _contract_output(name, reference, tolerances or judging.Tolerances())
                problems = []
            except RefimplError as e:
                reference, problems = None, [f"refimpl refuses this image: {e}"]
            rec = AuditResult(label, name, "no-claim", True, reference=reference, input_sha256=sha256_bytes(data),
                              problems=problems).to_dict()
    except WeightsError:  # no model, no audit: stop the run (it resumes once the weights are there)
        raise
    except (OSError, RefimplError) as e:  # this image only: an unreadable file, ...
        rec = AuditResult(label, name, "error", False, problems=[f"{type(e).__name__}: {e}"]).to_dict()
    rec["image"] = label
    return rec


def audit_record(image, model, claim, label, tolerances=None, accept=(), **loading):
    """The audit-dir record of one image judged against the claim file `claim` (the same rules
    as audit-dir: no file, a `no-claim` record with the reference; an unreadable image, an
    `error` record), named `label` in the record. image: a path or the encoded bytes. `refimpl evaluate --claimed` records these."""
    image = image if isinstance(image, (bytes, bytearray)) else Path(image)
    return _audit_one(image, registry.get(model).hosted_name, tolerances, accept, loading, claim, label)


def judging_model(model, **loading):
    """The loaded model the audits judge with (loaded once per process and kept): a worker that
    also computes its own records with it loads the weights once."""
    return contract.get_model(model, **loading)


def _claimed_result(claim):
    """The claimed result list of the claim file (unwrapped from its envelope), or None when it
    cannot be read as one."""
    obj, _, _, problem = read_claimed(claim)
    result = None if problem else judging.unwrap(obj)[0]
    return result if isinstance(result, list) else None


def count_statuses(records):
    """{verdict status: number of records}, sorted by status."""
    by_status = {}
    for r in records:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    return dict(sorted(by_status.items()))


def summarize(records, images, folder, out, audited_now, annotations=None):
    names = {p.name for p in images}
    stems = {p.stem for p in images}
    bad = [r for r in records if r["exit_code"] != 0]
    claims = [r for r in records if r["status"] not in ("no-claim", "error")]
    covered = [(r.get("coverage") or {}) for r in claims]
    orphans = sorted(p.name for p in Path(folder).glob("*.json") if p.stem not in stems)
    return {
        "folder": str(folder), "out": str(out), "images": len(images), "recorded": len(records),
        "audited_now": audited_now, "remaining": len(names - {r["image"] for r in records}),
        "by_status": count_statuses(records),
        "not_agreeing": [{"image": r["image"], "status": r["status"], "wrong_image": r.get("wrong_image"),
                          "word": vocabulary.word(r["status"], r.get("wrong_image")),
                          "first_problem": (r["problems"] or [None])[0]
                          or (f"only {(r.get('coverage') or {}).get('text', 'nothing was compared')}"
                              if r["status"] == "incomplete" else None)} for r in bad],
        "coverage": {"claims": len(claims), "claimed": sum(c.get("claimed", 0) for c in covered),
                     "claimed_judged": sum(c.get("claimed_judged", 0) for c in covered),
                     "incomplete": sum(r["status"] == "incomplete" for r in claims)},
        "claims_without_image": orphans,
        "statistics": statistics(records, annotations),
        "ok": not bad,
        # 0 every claim agrees; 3 the only failures are INCOMPLETE (too little judged); else 1
        "exit_code": 0 if not bad else (3 if all(r["status"] == "incomplete" for r in bad) else 1),
    }


def statistics(records, annotations=None):
    """Dataset statistics of the judged records (whose verdict compared items): counts per signature and,
    from the verdicts' rows, how often the claimed and reference answers agree.

    Classification: top-1 agreement (the rank-1 labels are equal), top-5 set agreement (the same
    set of labels), |claimed − reference| score differences over every matched label (mean, p95,
    max), the per-image Spearman rank correlation of the scores (mean, min), and the confusion:
    (reference top-1, claimed top-1) pairs that differ, most frequent first. Detection: matched,
    missing and extra detections in total, score differences and IoU of the matched ones, the AP
    of the claimed detections with the reference's as ground truth (`claimed_ap`) and, given
    `annotations` (a parsed COCO instances JSON), both services' AP against them (`annotated_ap`)."""
    # judged: a verdict that compared items (a malformed claim or an error envelope compares none)
    judged = [r for r in records if r.get("verdict") and r["verdict"].get("rows")]
    by_signature = {}
    for r in judged:
        for name in r["verdict"].get("signatures") or []:
            by_signature[name] = by_signature.get(name, 0) + 1
    out = {"judged": len(judged), "by_signature": dict(sorted(by_signature.items()))}
    if not judged:
        return out
    diffs, rhos = [], []
    for r in judged:
        diffs += [abs(row["score_diff"]) for row in r["verdict"]["rows"] if _number(row.get("score_diff"))]
        if _number(r["verdict"]["stats"].get("spearman")):
            rhos.append(r["verdict"]["stats"]["spearman"])
    out["score_diff"] = _spread(diffs)
    out["spearman"] = {"n": len(rhos), "mean": float(np.mean(rhos)), "min": float(np.min(rhos))} if rhos else None
    if judged[0]["verdict"]["task"] == "image-classification":
        top1 = top5 = 0
        confusion = {}
        for r in judged:
            rows = r["verdict"]["rows"]
            ref = [row.get("reference_label") for row in rows if row.get("reference_label") is not None]
            claimed = [row.get("claimed_label") for row in rows if row.get("claimed_label") is not None]
            first = [row for row in rows if row.get("rank") == 1]
            if first and first[0].get("reference_label") == first[0].get("claimed_label"):
                top1 += 1
            elif first:
                pair = (first[0].get("reference_label"), first[0].get("claimed_label"))
                confusion[pair] = confusion.get(pair, 0) + 1
            top5 += bool(ref) and set(ref) == set(claimed)
        out["top1_agreement"] = top1 / len(judged)
        out["top5_set_agreement"] = top5 / len(judged)
        out["confusion"] = [{"reference": a, "claimed": b, "images": n}
                            for (a, b), n in sorted(confusion.items(), key=lambda kv: (-kv[1], str(kv[0])))]
    else:
        counts = {}
        ious = []
        for r in judged:
            for row in r["verdict"]["rows"]:
                counts[row.get("status")] = counts.get(row.get("status"), 0) + 1
                if row.get("status") == "match" and _number(row.get("iou")):
                    ious.append(row["iou"])
        out["detections"] = dict(sorted((str(k), v) for k, v in counts.items()))
        out["iou"] = _spread(ious)
        out["ap_vs_reference"] = claimed_ap(records)
        if annotations is not None:
            out["ap_vs_annotations"] = annotated_ap(records, annotations)
    return out


def _with_detections(records):
    """The records whose claim and reference are both detection lists (the claim may disagree)."""
    return [r for r in records if isinstance(r.get("claimed_result"), list) and isinstance(r.get("reference"), list)]


def claimed_ap(records):
    """COCO AP of the claimed detections with refimpl's reference (its contract output: the
    detections above the contract threshold) as the ground truth, over every record with both
    (`coco_ap.claimed_vs_reference`) -> {"AP": …, …, "images": N}, None when there is none, or
    {"error": why} without pycocotools."""
    both = _with_detections(records)
    if not both:
        return None
    try:
        found, _, _ = coco_ap.claimed_vs_reference([(r["reference"], r["claimed_result"]) for r in both])
    except DatasetError as e:
        return {"error": str(e)}
    return dict(found, images=len(both))


def annotated_ap(records, coco):
    """Both services' COCO AP against annotations `coco` (a parsed instances JSON; images matched
    by `file_name` = the record's image name, labels to categories by name), on the same images:
    refimpl's contract output (above the contract threshold, as the claim is) and the claim ->
    {"reference": {"AP": …}, "claimed": {"AP": …}, "images": N}, None when no recorded image is
    annotated."""
    ids = {Path(im["file_name"]).as_posix(): int(im["id"]) for im in coco["images"]}
    categories = {c["name"]: int(c["id"]) for c in coco["categories"]}
    both = [r for r in _with_detections(records) if r["image"] in ids]
    if not both:
        return None
    try:
        return {"reference": coco_ap.coco_metrics(coco, [{"image_id": ids[r["image"]], "detections":
                                                         coco_ap.as_coco(r["reference"], categories)} for r in both]),
                "claimed": coco_ap.coco_metrics(coco, [{"image_id": ids[r["image"]], "detections":
                                                       coco_ap.as_coco(r["claimed_result"], categories)} for r in both]),
                "images": len(both)}
    except DatasetError as e:
        return {"error": str(e)}


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _spread(values):
    if not values:
        return None
    v = np.asarray(values, dtype=np.float64)
    return {"n": int(v.size), "mean": float(v.mean()), "p95": float(np.percentile(v, 95)), "max": float(v.max()),
            "min": float(v.min())}


def format_summary(s):
    lines = [f"audit-dir {s['folder']}: {s['recorded']} of {s['images']} image(s) recorded in {s['out']} "
             f"({s['audited_now']} audited in this run, {s['remaining']} remaining)"]
    lines.append("  " + ", ".join(f"{k}: {v}" for k, v in s["by_status"].items()) if s["by_status"] else "  nothing audited")
    for r in s["not_agreeing"]:
        # The words of audit and check-endpoint (AGREE, EXPLAINED, DISAGREE, WRONG IMAGE?, INCOMPLETE, MALFORMED).
        lines.append(f"  {vocabulary.word(r['status'], r.get('wrong_image')):<12} {r['image']}: {r['first_problem'] or ''}")
    cov = s.get("coverage")
    if cov and cov["claims"]:
        lines.append(f"  coverage: {cov['claimed_judged']} of {cov['claimed']} claimed row(s) judged over {cov['claims']} "
                     f"claim(s); {cov['incomplete']} claim(s) INCOMPLETE (too little judged)")
    lines += format_statistics(s.get("statistics") or {})
    if s["claims_without_image"]:
        lines.append(f"  claims without an image (ignored): {', '.join(s['claims_without_image'])}")
    verdict = "every recorded claim agrees with the reference" if s["ok"] else f"{len(s['not_agreeing'])} image(s) do not agree"
    if s["remaining"]:
        verdict += f"; {s['remaining']} image(s) not audited yet (rerun to continue)"
    lines.append("verdict: " + verdict)
    return "\n".join(lines)


def format_statistics(st):
    """The lines of `statistics()` in a summary (audit-dir's and `evaluate --claimed`'s)."""
    lines = []
    if st.get("judged"):
        parts = [f"{st['judged']} judged"]
        if "top1_agreement" in st:
            parts.append(f"top-1 agreement {100 * st['top1_agreement']:.1f}%, top-5 set agreement "
                         f"{100 * st['top5_set_agreement']:.1f}%")
        if st.get("score_diff"):
            d = st["score_diff"]
            parts.append(f"|score diff| mean {d['mean']:.2g}, p95 {d['p95']:.2g}, max {d['max']:.2g}")
        if st.get("spearman"):
            parts.append(f"Spearman mean {st['spearman']['mean']:.3f} (min {st['spearman']['min']:.3f})")
        if st["by_signature"]:
            parts.append("signatures: " + ", ".join(f"{k} {v}" for k, v in st["by_signature"].items()))
        lines.append("  statistics: " + "; ".join(parts))
        for c in (st.get("confusion") or [])[:5]:
            lines.append(f"  confused: reference {c['reference']} -> claimed {c['claimed']} ({c['images']} image(s))")
    ap = st.get("ap_vs_reference")
    if ap:
        lines.append("  claimed AP, refimpl's detections as ground truth: " + _ap_text(ap) +
                     ("" if "error" in ap else f" ({ap['images']} image(s))"))
    ann = st.get("ap_vs_annotations")
    if ann:
        if "error" in ann:
            lines.append("  AP against the annotations: " + ann["error"])
        else:
            lines.append(f"  AP against the annotations ({ann['images']} image(s)): refimpl {_ap_text(ann['reference'])}; "
                         f"claimed {_ap_text(ann['claimed'])}")
    return lines


def _ap_text(m):
    if "error" in m:
        return m["error"]
    return ", ".join(f"{k} {'n/a' if m[k] is None else format(m[k], '.3f')}" for k in ("AP", "AP50", "AP75", "AR100"))


def _isatty(stream):
    return hasattr(stream, "isatty") and stream.isatty()
