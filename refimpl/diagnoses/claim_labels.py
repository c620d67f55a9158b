"""The "claim" entry about labels: the same labels written in another style."""

from refimpl.pipeline.postprocess import seed_label

from . import register


@register("label_style", "claim", order=70, scope=("classification",),
          look_at="the endpoint's label table: ImageNet's full synonym lists vs the first name upper-cased")
def label_style(claimed_labels, reference_labels):
    """labels differ only in style (first comma-separated name, upper-cased)

    -> {"detail", "claimed", "reference"}: both lists in the seed's style, when that makes more of
    them agree rank by rank ("Persian cat" for "PERSIAN CAT"); else None."""
    if claimed_labels == reference_labels:
        return None
    norm_c = [seed_label(x) for x in claimed_labels]
    norm_r = [seed_label(x) for x in reference_labels]
    same_before = sum(a == b for a, b in zip(claimed_labels, reference_labels))
    if sum(a == b for a, b in zip(norm_c, norm_r)) <= same_before:
        return None
    example = next(c for c, r in zip(claimed_labels, reference_labels) if c != r)
    return {"detail": f"labels differ only in style, e.g. {example!r}; compared as first comma-separated name, "
                      "upper-cased", "claimed": norm_c, "reference": norm_r}
