"""A hosted DETR response rebuilt from what FACTS.md records of a real one (a photo of a building
with a clock tower by water): all 100 queries, sorted by score, integer boxes in the original
image's pixels with negative corners wrapped to unsigned 16-bit, and tiny scores (clock 0.00038,
down to 7.6e-7, summing to about 0.0039). The full recording is not public; every property the
judge reacts to is FACTS.md's, the remaining labels and boxes are drawn deterministically."""

import numpy as np

LABELS = ["clock", "clock", "person", "train", "bench", "boat", "fire hydrant", "car", "bird", "person",
          "traffic light", "boat", "umbrella", "clock", "person"]
WRAPPED = [("ymin", 65534), ("ymin", 65535), ("xmin", 65525), ("xmin", 65513)]


def hosted_clock_tower_response():
    """-> the bare result list (100 items), as the hosted API returned it."""
    rng = np.random.default_rng(1191)
    scores = _scores()
    out = []
    for q in range(100):
        if q == 0:
            box = {"xmin": 992, "ymin": 24, "xmax": 1073, "ymax": 146}
        else:
            x0, y0 = int(rng.integers(0, 1000)), int(rng.integers(0, 1600))
            box = {"xmin": x0, "ymin": y0, "xmax": x0 + int(rng.integers(20, 190)),
                   "ymax": y0 + int(rng.integers(20, 216))}
        if q == 1:
            box.update(xmax=1191, ymax=1816)
        if 2 <= q < 2 + len(WRAPPED):
            key, value = WRAPPED[q - 2]
            box[key] = value
        label = LABELS[q] if q < len(LABELS) else str(rng.choice(LABELS))
        out.append({"score": float(scores[q]), "label": label, "box": box})
    return out


def _scores(top=3.8e-4, bottom=7.6e-7, total=0.0039, n=100):
    """n descending scores from `top` to `bottom` summing to `total`: top * exp(-a q^b), with b
    found by bisection and a fixing the last one."""
    q = np.arange(n)
    lo, hi = 0.1, 5.0
    for _ in range(100):
        b = (lo + hi) / 2
        s = top * np.exp(-np.log(top / bottom) * (q / (n - 1)) ** b)
        lo, hi = (b, hi) if s.sum() < total else (lo, b)
    return s
