"""The "claim" entries about detection boxes and how many detections a claim has: systematic
reshapings of the same answer that the judge (refimpl.audit.judge) recognises, undoes and names.

Each check is a pure function of the claimed and reference arrays (boxes (n, 4) as corners
(xmin, ymin, xmax, ymax) in pixels, scores (n,)) -> None when the signature is absent, else a dict
with "detail" (what was seen and how it was undone: the verdict's text) and the undone arrays.
The judge tries them in the catalogue's order: uint16 wraparound, integer rounding, normalized
boxes (on the boxes as the previous ones left them), then no_threshold."""

import numpy as np

from . import register

UINT16_HALF, UINT16_SPAN = 32768, 65536  # a wrapped negative corner lies in [32768, 65535]
NORMALIZED_SLACK = 0.02  # normalized corners may stray this far outside [0, 1]
ROUNDING_PX = 1.0  # the extra corner tolerance of integer boxes (truncation moves a corner by < 1 px)


@register("uint16_wraparound", "claim", order=10, scope=("detection",),
          look_at="the endpoint's box serialization: corners stored as unsigned 16-bit integers")
def uint16_wraparound(boxes, image_size):
    """negative coordinates wrapped to unsigned 16-bit (65534 = -2)

    Integer corners in 32768..65535 are negative corners stored as unsigned 16-bit (v - 65536);
    not on an image that large, where such corners can be real. -> {"detail", "boxes": unwrapped}."""
    wrapped = (boxes >= UINT16_HALF) & (boxes <= UINT16_SPAN - 1) & (boxes == np.round(boxes))
    if (image_size is not None and max(image_size) >= UINT16_HALF) or not wrapped.any():
        return None
    examples = ", ".join(f"{int(x)} = {int(x) - UINT16_SPAN}" for x in np.unique(boxes[wrapped])[:4])
    return {"detail": f"{int(wrapped.sum())} corner(s) wrapped to unsigned 16-bit ({examples}); unwrapped before "
                      "comparing", "boxes": np.where(wrapped, boxes - UINT16_SPAN, boxes)}


@register("integer_rounding", "claim", order=20, scope=("detection",),
          look_at="the endpoint's box serialization: corners rounded or truncated to integers")
def integer_rounding(boxes, reference_boxes):
    """box corners rounded (or truncated) to integer pixels

    Whole-pixel claimed corners against fractional reference corners: compared with the reference
    rounded, with ROUNDING_PX more corner tolerance (truncation) -> {"detail", "reference_boxes":
    rounded, "corner_slack"}."""
    C, R = boxes, reference_boxes
    ref_whole = len(R) > 0 and bool(np.all(R == np.round(R)))
    if not np.all(C == np.round(C)) or ref_whole or not (np.abs(C) > 1).any():
        return None
    return {"detail": "every box corner is a whole number of pixels; compared with the reference's corners rounded "
                      "to integers, with 1 px more tolerance (truncation)",
            "reference_boxes": np.round(R), "corner_slack": ROUNDING_PX}


@register("normalized_boxes", "claim", order=30, scope=("detection",),
          look_at="the post-processing's target size: boxes must be scaled to the image's pixels")
def normalized_boxes(boxes, reference_boxes, image_size):
    """boxes relative to the image size (all corners within [0, 1]), not pixels

    Every corner within [0, 1] (NORMALIZED_SLACK) while the image is larger -> {"detail", "boxes":
    scaled by image_size}, or with "boxes" None and a "problem" when the image size is unknown."""
    C, R = boxes, reference_boxes
    big_ref = (len(R) > 0 and np.abs(R).max() > 1.5) or (image_size is not None and max(image_size) > 2)
    if not (np.all((C >= -NORMALIZED_SLACK) & (C <= 1 + NORMALIZED_SLACK)) and big_ref):
        return None
    if image_size is None:
        return {"detail": "every corner is within [0, 1]: boxes are relative to the image size; image_size unknown, "
                          "boxes not compared", "boxes": None,
                "problem": "boxes are normalized (0..1) and no image_size was given: cannot compare boxes"}
    w, h = image_size
    return {"detail": f"every corner is within [0, 1]: boxes are relative to the image size; scaled by {w}x{h} "
                      "before comparing", "boxes": C * np.array([w, h, w, h], dtype=np.float64)}


@register("no_threshold", "claim", order=40, confidence="likely", scope=("detection",),
          look_at="the endpoint's post-processing: the score threshold (transformers' default 0.5) not applied")
def no_threshold(scores, reference_scores, threshold, extra):
    """every query returned, no score threshold applied

    At least `extra` more detections than the reference keeps above `threshold`, and some at or
    below it, or as many as the model has queries -> {"detail"}. Named whatever else is wrong with
    the claim (a claim for another image still shows it)."""
    low = int(np.sum(scores <= threshold))
    confident_ref = int(np.sum(reference_scores > threshold))
    every_query = len(reference_scores) > confident_ref and len(scores) >= len(reference_scores)
    if not (len(scores) >= confident_ref + extra and (low or every_query)):
        return None
    return {"detail": f"{len(scores)} detections claimed ({low} at or below {threshold}, the lowest "
                      f"{scores.min():.3g}); the reference keeps {confident_ref} above {threshold}"}
