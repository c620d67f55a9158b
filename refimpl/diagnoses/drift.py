"""Generic drift: the last "tensor" entry, claiming whatever no earlier entry explains.

Numerical error that no simple transformation explains is what a wrong weight, a wrong formula or
accumulated rounding looks like: the diagnosis says how much of the tensor is over the tolerance,
where the worst element is, and how well A still correlates with B."""

import numpy as np

from refimpl.numerics import num

from . import register
from .case import fmt

LAST = 1000  # its order: after every other "tensor" entry


@register("generic drift", order=LAST, confidence="unknown",
          look_at="this layer's weights and formula; rerun with isolate to see if it is inherited")
def generic_drift(case):
    """Numerical error no layout, offset, scale or order change explains (a wrong weight or formula)."""
    if not case.same_shape:
        return None
    a, b = case.a, case.b
    err = np.abs(a - b)
    worst = tuple(int(i) for i in np.unravel_index(int(err.argmax()), err.shape)) if err.size else ()
    frac = float((err > case.limit).mean()) if err.size else 0.0
    sa, sb = a.std(), b.std()
    corr = float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb)) if sa > 0 and sb > 0 else float("nan")
    return {"kind": "generic drift", "fraction_over": frac, "worst_index": list(worst), "correlation": num(corr),
            "message": f"generic drift: {frac:.1%} of the elements exceed the tolerance, worst at index {worst} "
                       f"(A={fmt(a[worst])}, B={fmt(b[worst])}); correlation with B {corr:.6f}. No layout, "
                       "offset, scale or channel-order change explains it: look at this layer's weights and formula"}
