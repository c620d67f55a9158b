"""From model outputs to the hosted API's output contract (see the seeds in ../shared/seeds/).

Classification: softmax over the logits, the top k, `[{"label", "score"}]` sorted by score.
"""

import numpy as np

from . import ops

LABEL_STYLES = ("seed", "raw")


def seed_label(name):
    """The hosted API's label style: the first comma-separated name, upper-cased
    ("Pekinese, Pekingese, Peke" -> "PEKINESE")."""
    return name.split(",")[0].strip().upper()


def format_label(name, style="seed"):
    if style == "seed":
        return seed_label(name)
    if style == "raw":
        return name
    raise ValueError(f"label style must be one of {LABEL_STYLES}, got {style!r}")


def top_k(logits, id2label, k=5, labels="seed"):
    """logits: (num_labels,) -> the k most probable classes as [{"label", "score"}], best first.

    Ties are broken by class index (a stable sort), so the order is deterministic.
    """
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    probs = ops.softmax(logits)
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": format_label(id2label[int(i)], labels), "score": float(probs[i])} for i in order]
