"""Audits over a dataset: `refimpl evaluate --claimed DIR` records audit-dir's own record for every
image and reports audit-dir's dataset statistics (one code path); for detection, the AP of the
claimed detections with refimpl's detections as ground truth equals pycocotools run directly in
the test on the same data (to 1e-9), and with annotations both services' AP side by side."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import refimpl
from refimpl.cli import main
from refimpl.audit.folder import audit_dir
from refimpl.evaluation import evaluate
from refimpl.synth.datasets import make_classification, make_detection

pytest.importorskip("pycocotools", reason="pip install 'refimpl[evaluate]' for COCO AP")


def perturbed(answer, rng):
    """A service's claim made from refimpl's own answer (contract shape, above the threshold):
    boxes jittered (some past IoU 0.5), scores moved, a third of the detections dropped and a
    confident false detection added: its AP against refimpl's detections is neither 0 nor 1."""
    out = []
    for d in answer:
        if rng.random() < 0.3:
            continue
        b = d["box"]
        w, h = b["xmax"] - b["xmin"], b["ymax"] - b["ymin"]
        amount = 0.4 if rng.random() < 0.3 else 0.03
        box = {k: b[k] + float(rng.uniform(-amount, amount)) * (w if k[0] == "x" else h) for k in b}
        out.append({"label": d["label"], "score": float(np.clip(d["score"] + rng.uniform(-0.2, 0.2), 0.01, 1)), "box": box})
    if answer:
        b = answer[0]["box"]
        out.append({"label": answer[0]["label"], "score": 0.99,
                    "box": {"xmin": b["xmax"], "ymin": b["ymax"], "xmax": b["xmax"] + 30, "ymax": b["ymax"] + 30}})
    return out


@pytest.fixture(scope="module")
def det_claims(tmp_path_factory, detr_small_dirs):
    """6 synthesized COCO images with a perturbed claim beside each (contract shape, an envelope)."""
    folder = tmp_path_factory.mktemp("claimed-coco")
    weights = str(detr_small_dirs["timm"])
    make_detection(folder, weights=weights, n=6, seed=1)
    model = refimpl.load("detr", weights)
    rng = np.random.default_rng(5)
    for image in sorted((folder / "images").glob("*.png")):
        claim = {"result": perturbed(model(image), rng), "success": True, "errors": [], "messages": []}
        (image.with_suffix(".json")).write_text(json.dumps(claim))
    return folder, weights


def direct_ap(records, folder):
    """The oracle: pycocotools on refimpl's recorded detections (above the threshold) as ground
    truth and the claim files' detections, built here independently of refimpl.audit.coco_ap."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    records = sorted(records, key=lambda r: r["image"])
    claims = [json.loads((folder / Path(r["image"]).with_suffix(".json")).read_text())["result"] for r in records]
    names = sorted({d["label"] for r, c in zip(records, claims) for d in r["reference"] + c})
    cat = {n: i + 1 for i, n in enumerate(names)}

    def xywh(d):
        b = d["box"]
        return [b["xmin"], b["ymin"], b["xmax"] - b["xmin"], b["ymax"] - b["ymin"]]

    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in range(1, len(records) + 1)], "categories": [{"id": v, "name": k} for k, v in cat.items()],
                  "annotations": [{"id": n, "image_id": i, "category_id": cat[d["label"]], "bbox": xywh(d), "iscrowd": 0,
                                   "area": xywh(d)[2] * xywh(d)[3]}
                                  for n, (i, d) in enumerate(((i, d) for i, r in enumerate(records, 1) for d in r["reference"]), 1)]}
    gt.createIndex()
    dt = gt.loadRes([{"image_id": i, "category_id": cat[d["label"]], "bbox": xywh(d), "score": d["score"]}
                     for i, c in enumerate(claims, 1) for d in c])
    ev = COCOeval(gt, dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return dict(zip(["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"], ev.stats))


def same(ours, direct):
    for key, value in direct.items():
        assert (ours[key] is None and value == -1) or abs(ours[key] - value) <= 1e-9, (key, ours[key], value)


@pytest.mark.slow
def test_claimed_ap_of_audit_dir_and_evaluate_equal_pycocotools(det_claims, tmp_path, capsys):
    folder, weights = det_claims
    images = folder / "images"
    # one BLAS thread, as evaluate's workers (OpenBLAS rounds float32 sums differently with two)
    with threadpool_limits(1):
        summary = audit_dir(images, "detr", out=tmp_path / "audit.jsonl", progress=False, weights=weights,
                            annotations=folder / "instances.json")
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert sum(len(r["reference"]) for r in records) >= 6  # a ground truth worth the name
    ap = summary["statistics"]["ap_vs_reference"]
    same(ap, direct_ap(records, images))
    assert 0.2 < ap["AP"] < 0.9 and ap["images"] == 6, ap
    both = summary["statistics"]["ap_vs_annotations"]
    assert both["images"] == 6 and both["reference"]["AP"] != both["claimed"]["AP"]
    # evaluate --claimed: the same audit records (one code path) and the same statistics
    report = evaluate(images, "detr", annotations=folder / "instances.json", out=tmp_path / "eval.jsonl", workers=1,
                      progress=False, weights=weights, claimed=images)
    audits = sorted((json.loads(line)["audit"] for line in (tmp_path / "eval.jsonl").read_text().splitlines()),
                    key=lambda r: r["image"])
    assert [(a["image"], a["status"], a["reference"], a["claimed_result"]) for a in audits] == \
           [(r["image"], r["status"], r["reference"], r["claimed_result"]) for r in sorted(records, key=lambda r: r["image"])]
    assert report["claimed"]["statistics"] == summary["statistics"]
    assert report["claimed"]["by_status"] == summary["by_status"]
    assert main(["evaluate", str(images), "--model", "detr", "--weights", weights, "--annotations",
                 str(folder / "instances.json"), "--out", str(tmp_path / "eval.jsonl"), "--claimed", str(images),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"claimed AP, refimpl's detections as ground truth: AP {ap['AP']:.3f}" in text
    assert "AP against the annotations (6 image(s)): refimpl AP" in text
    # audit-dir on the command line: its complete results file is only read (nothing computed again)
    assert main(["audit-dir", str(images), "--model", "detr", "--weights", weights, "--out", str(tmp_path / "audit.jsonl"),
                 "--annotations", str(folder / "instances.json"), "--no-progress"]) == 1  # the claims disagree
    text = capsys.readouterr().out
    assert f"claimed AP, refimpl's detections as ground truth: AP {ap['AP']:.3f}" in text
    assert f"refimpl AP {both['reference']['AP']:.3f}" in text and f"claimed AP {both['claimed']['AP']:.3f}" in text


@pytest.mark.slow
def test_evaluate_claimed_classification_statistics(resnet50_small_dir, tmp_path):
    """Claims in a separate folder mirroring the class subfolders: refimpl's own answer for half
    the images, the first two labels swapped for the others; top-1 agreement is then a direct
    count, and a resumed run without --claimed is refused (records never mix)."""
    data = tmp_path / "data"
    weights = str(resnet50_small_dir)
    make_classification(data, weights=weights, n=8, seed=2)
    model = refimpl.load("resnet-50", weights)
    claims = tmp_path / "claims"
    images = sorted(data.glob("*/*.png"))
    for i, image in enumerate(images):
        answer = model(image, top_k=5)
        if i % 2:
            answer[0]["label"], answer[1]["label"] = answer[1]["label"], answer[0]["label"]
        target = claims / image.parent.name / (image.stem + ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(answer))
    report = evaluate(data, "resnet-50", out=tmp_path / "r.jsonl", workers=2, progress=False, weights=weights, claimed=claims)
    st = report["claimed"]["statistics"]
    assert report["claimed"]["judged_images"] == 8 and st["judged"] == 8
    assert st["top1_agreement"] == 0.5 and st["top5_set_agreement"] == 1.0
    assert sum(c["images"] for c in st["confusion"]) == 4
    # a swap of two near-tied labels is a note, not a problem (the judge's rule): not every swap disagrees
    by_status = report["claimed"]["by_status"]
    assert sum(by_status.values()) == 8 and by_status["agree"] >= 4 and by_status.get("disagree", 0) >= 1
    with pytest.raises(refimpl.errors.ResultsFileError, match="another preprocessor config"):
        evaluate(data, "resnet-50", out=tmp_path / "r.jsonl", workers=1, progress=False, weights=weights)
    shutil.rmtree(claims / images[0].parent.name)  # a missing claim: audit-dir's no-claim record
    report = evaluate(data, "resnet-50", out=tmp_path / "r2.jsonl", workers=1, progress=False, weights=weights, claimed=claims)
    assert report["claimed"]["by_status"].get("no-claim", 0) >= 1
