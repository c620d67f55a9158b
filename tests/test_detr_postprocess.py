"""DETR post-processing against transformers' post_process_object_detection and
pipeline("object-detection"): same detections, same order (query order), boxes within 1e-3 px;
crafted logits around the threshold; threshold=None; the output contract."""

import numpy as np
import pytest

from refimpl.pipeline import postprocess
from refimpl.synth.detr import COCO_ID2LABEL, DETR_PREPROCESSOR

BOX_TOL = 1e-3  # pixels
SCORE_TOL = 1e-6


def hf_processor(config=DETR_PREPROCESSOR):
    from transformers import DetrImageProcessorPil

    return DetrImageProcessorPil(**{k: v for k, v in config.items() if k != "image_processor_type"})


def hf_postprocess(logits, pred_boxes, sizes, threshold):
    import torch
    from transformers.models.detr.modeling_detr import DetrObjectDetectionOutput

    outputs = DetrObjectDetectionOutput(logits=torch.from_numpy(logits), pred_boxes=torch.from_numpy(pred_boxes))
    results = hf_processor().post_process_object_detection(outputs, threshold=threshold, target_sizes=list(sizes))
    return [{k: v.numpy() for k, v in r.items()} for r in results]


def assert_same(ours, ref, id2label=COCO_ID2LABEL):
    """ours: one image's refimpl detections; ref: transformers' {"scores", "labels", "boxes"}."""
    assert len(ours) == len(ref["scores"])
    assert [d["label"] for d in ours] == [id2label[int(i)] for i in ref["labels"]]
    # the same float32 softmax up to the last bits of exp (numpy's vs torch's SIMD exp, and torch
    # multiplies by 1/sum where refimpl divides): a few ulp
    np.testing.assert_allclose([d["score"] for d in ours], ref["scores"], rtol=0, atol=SCORE_TOL)
    boxes = np.array([[d["box"][k] for k in postprocess.BOX_KEYS] for d in ours]).reshape(-1, 4)
    np.testing.assert_allclose(boxes, ref["boxes"].reshape(-1, 4), rtol=0, atol=BOX_TOL)


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.9, 0.0])
def test_same_detections_as_post_process_object_detection(detr_batch_runs, detr_batch, threshold):
    """On the synthesized models' outputs for the padded batch, each image scaled to its original size."""
    sizes = [im.shape[:2] for im in detr_batch["images"]]
    total = 0
    for run in detr_batch_runs.values():
        logits, pred_boxes = run["outputs"]["logits"], run["outputs"]["pred_boxes"]
        ours = postprocess.object_detection(run["outputs"], sizes, COCO_ID2LABEL, threshold)
        ref = hf_postprocess(logits, pred_boxes, sizes, threshold)
        for o, r in zip(ours, ref):
            assert_same(o, r)
            total += len(o)
    assert total > 0


def test_threshold_none_keeps_every_query_in_query_order(detr_batch_runs, detr_batch):
    run = detr_batch_runs["timm"]
    sizes = [im.shape[:2] for im in detr_batch["images"]]
    every = postprocess.object_detection(run["outputs"], sizes, COCO_ID2LABEL, threshold=None)
    assert [len(d) for d in every] == [100, 100, 100]
    kept = postprocess.object_detection(run["outputs"], sizes, COCO_ID2LABEL, threshold=0.5)
    ref = hf_postprocess(run["outputs"]["logits"], run["outputs"]["pred_boxes"], sizes, threshold=-1.0)
    for all_queries, above, r in zip(every, kept, ref):
        assert_same(all_queries, r)  # transformers with a threshold nothing fails
        assert [d for d in all_queries if d["score"] > 0.5] == above  # the same order: query order


def crafted_logits(scores, num_classes=92, label=17):
    """(1, Q, num_classes) float32 logits whose best-class probability is each of `scores` exactly
    (up to float32 rounding): class `label` gets log(p), no-object log(1 - p), the rest -1e4."""
    q = len(scores)
    logits = np.full((1, q, num_classes), -1e4, np.float32)
    for i, p in enumerate(scores):
        logits[0, i, label] = np.log(p)
        logits[0, i, -1] = np.log1p(-p)
    return logits


def test_threshold_is_strict_at_the_boundary():
    """Scores just below, exactly at and just above the threshold: kept only when strictly above,
    exactly as transformers decides (the comparison is made in float32)."""
    thr = 0.5
    below, above = np.nextafter(np.float32(thr), np.float32(0)), np.nextafter(np.float32(thr), np.float32(1))
    logits = crafted_logits([0.4, float(below), thr, float(above), 0.6, 0.5 + 1e-4, 0.5 - 1e-4])
    logits[0, 2, 17] = logits[0, 2, -1] = 3.0  # exactly 0.5: two equal logits, the rest exp(-inf) = 0
    pred_boxes = np.tile(np.float32([[0.5, 0.5, 0.2, 0.4]]), (1, 7, 1))
    ours = postprocess.object_detection({"logits": logits, "pred_boxes": pred_boxes}, [(480, 640)], COCO_ID2LABEL, thr)[0]
    ref = hf_postprocess(logits, pred_boxes, [(480, 640)], thr)[0]
    assert_same(ours, ref)
    every = postprocess.detections(logits[0], pred_boxes[0], (480, 640), COCO_ID2LABEL, None)
    scores = np.float32([d["score"] for d in every])
    assert scores[2] == np.float32(0.5)
    kept = {i for i, d in enumerate(every) if d in ours}
    assert kept == {i for i in range(7) if scores[i] > np.float32(0.5)}
    assert 2 not in kept and 4 in kept and 5 in kept and 6 not in kept
    for d in ours:
        assert d["label"] == "cat"  # COCO id 17
        np.testing.assert_allclose([d["box"][k] for k in postprocess.BOX_KEYS], [256, 144, 384, 336], atol=1e-4)


def test_boxes_are_corners_in_original_pixels():
    logits = crafted_logits([0.9, 0.8])
    pred_boxes = np.float32([[[0.5, 0.5, 1.0, 1.0], [0.1, 0.2, 0.4, 0.6]]])
    dets = postprocess.detections(logits[0], pred_boxes[0], (300, 451), COCO_ID2LABEL, 0.5)
    assert dets[0]["box"] == {"xmin": 0.0, "ymin": 0.0, "xmax": 451.0, "ymax": 300.0}
    b = dets[1]["box"]
    np.testing.assert_allclose([b["xmin"], b["ymin"], b["xmax"], b["ymax"]],
                               [(0.1 - 0.2) * 451, (0.2 - 0.3) * 300, 0.3 * 451, 0.5 * 300], atol=1e-4)
    assert b["xmin"] < 0 and b["ymin"] < 0  # not clipped, as transformers
    for d in dets:
        assert set(d) == {"score", "label", "box"} and all(type(v) is float for v in d["box"].values())
        assert type(d["score"]) is float and d["label"] == "cat"


def test_same_detections_as_the_pipeline(detr_small_models, detr_hf):
    """refimpl's whole path (decode, preprocess, forward, postprocess) against
    pipeline("object-detection") on the same synthesized checkpoints (at SMALL_PREPROCESSOR's size:
    the official size is covered in test_detr_layers.py). The pipeline truncates boxes to int; the
    scores come through a float32 forward on each side (end to end: ~1e-5)."""
    from PIL import Image
    from transformers import pipeline

    from fixtures_detr import EXAMPLES_DIR, SMALL_PREPROCESSOR

    path = EXAMPLES_DIR / "cat.png"
    for layout in ("timm", "transformers"):
        pipe = pipeline("object-detection", model=detr_hf[layout], image_processor=hf_processor(SMALL_PREPROCESSOR))
        ref = pipe(Image.open(path), threshold=0.5)
        ours = detr_small_models[layout](path, threshold=0.5)
        assert ref, "the synthesized model detects something on cat.png"
        assert [d["label"] for d in ours] == [d["label"] for d in ref]
        np.testing.assert_allclose([d["score"] for d in ours], [d["score"] for d in ref], rtol=0, atol=1e-4)
        for o, r in zip(ours, ref):
            for k in postprocess.BOX_KEYS:
                # int() of ours, unless ours sits within float32 noise of an integer
                assert int(o["box"][k]) == r["box"][k] or abs(o["box"][k] - round(o["box"][k])) < BOX_TOL, (o, r)
