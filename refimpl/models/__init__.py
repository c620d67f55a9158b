"""The model math: pure functions over numpy arrays and a params mapping (checkpoint key -> array).

    ops.py     one small function per op (conv2d by im2col + one matmul, batch norm, softmax, ...)
    resnet.py  ResNet-50, the readable reference: one op per line, NCHW, every layer traced
    fast.py    the same ResNet-50 computed faster (BN folded, NHWC, reused buffers), checked
               against resnet.py on every traced tensor
    detr.py    DETR-ResNet-50: backbone, sine positions, encoder, decoder, heads
    fast_detr.py  DETR's fast path: fast.py's backbone and the same transformer with fewer passes

Nothing here imports anything of refimpl outside this package but `refimpl.errors`.

Which code computes a ResNet backbone is an explicit argument, `path`, never a default hidden in
a module: "reference" runs resnet.py and detr.py, "fast" runs fast.py (and fast_detr.py for DETR).
"""

PATHS = ("reference", "fast")


def check_path(path):
    """`path` itself, if it is one of PATHS; else ValueError naming the choices."""
    if path not in PATHS:
        raise ValueError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    return path


def record(trace, name, value):
    """Keep `value` under the checkpoint module path `name` when a trace (a dict) is asked for."""
    if trace is not None:
        trace[name] = value
