"""The answer-audit kit: a claimed response (a hosted API's JSON) judged against the reference's.

    judge/       one claimed answer vs the reference's: verdicts, signatures, tolerances
    image.py     refimpl audit: one image and its claimed response
    folder.py    refimpl audit-dir: a folder of images and claims, resumable
    endpoint.py  refimpl check-endpoint: a live endpoint's answers for a set of images
    coco_ap.py   COCO AP of claimed detections (pycocotools), for audit-dir and evaluate
    results.py   the JSON-lines results file audit-dir and evaluate share

It compares answers, not tensors: the tensor kit is refimpl.conformance.
"""
