"""The model math: pure functions over numpy arrays and a params mapping (checkpoint key -> array).

    ops.py     one small function per op (conv2d by im2col + one matmul, batch norm, softmax, ...)
    resnet.py  every ResNet (18 ... 152, DC5), the readable reference: the architecture read from
               config.json (Arch), the one walk over its blocks (blocks), one op per line, NCHW
    fast.py    the same ResNets computed faster (BN folded, NHWC, reused buffers), checked
               against resnet.py on every traced tensor
    detr.py    DETR with a ResNet backbone: backbone, sine positions, encoder, decoder, heads
    fast_detr.py  DETR's fast path: fast.py's backbone and the same transformer with fewer passes

Nothing here imports anything of refimpl outside this package but `refimpl.errors`.

Which code computes an answer is an explicit choice, `path`, made where a model is loaded
(refimpl/pipeline/loaded.py), never a default hidden in a module: "reference" runs resnet.py and
detr.py, "fast" runs fast.py (and fast_detr.py for DETR). The reference modules import nothing of
the fast path (tests/test_architecture.py).
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
