"""Per-layer error rows collected by the layer-by-layer tests and printed at the end of the run
(pytest_terminal_summary in conftest.py). Set REFIMPL_ERROR_REPORT=path.json to also save them."""

import re

import numpy as np

ROWS = []
INNER = re.compile(r"\.(layer\.\d|shortcut|act\d|bn\d|downsample)$")  # dicts: model, dtype, case, layer, shape, max_abs, max_rel


def compare(model, dtype, case, layer, ours, ref):
    """Record and return (max_abs, max_rel) with max_rel = max|ours - ref| / max|ref|."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{layer}: shape {ours.shape} != reference {ref.shape}"
    max_abs = float(np.abs(ours - ref).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    max_rel = max_abs / scale if scale > 0 else max_abs
    ROWS.append(dict(model=model, dtype=dtype, case=case, layer=layer, shape=list(ref.shape),
                     max_abs=max_abs, max_rel=max_rel, ref_max=scale))
    return max_abs, max_rel


def summary_lines():
    """One line per (model, dtype, layer): the worst error over all cases, in data-flow order."""
    worst = {}
    for r in ROWS:
        if INNER.search(r["layer"]):  # the inner convs of a block: kept in the JSON, not printed
            continue
        key = (r["model"], r["dtype"], r["layer"])
        if key not in worst or r["max_rel"] > worst[key]["max_rel"]:
            worst[key] = {**r, "cases": worst.get(key, {}).get("cases", 0)}
        worst[key]["cases"] += 1
    lines = [f"{'model':<16} {'dtype':<8} {'layer':<58} {'max abs':>10} {'max rel':>10} cases"]
    for (model, dtype, layer), r in worst.items():
        lines.append(f"{model:<16} {dtype:<8} {layer:<58} {r['max_abs']:>10.2e} {r['max_rel']:>10.2e} {r['cases']:>5}")
    return lines
