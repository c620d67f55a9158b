"""The defaults of `refimpl evaluate`'s parallelism, in one place: set them from a measurement
(`python benchmarks/evaluate_workers.py`, which prints the best configuration it measured and
the lines to put here).

- WORKERS: worker processes; None = one per core this process may run on.
- THREADS: BLAS threads per worker (1 with one worker per core: the cores are not
  oversubscribed). Part of the records' setup: float32 sums round differently with another count.
- BATCH: images per forward, by task. DETR stays at 1: padding a batch would change its answers.

Measured so far: batch 8 vs 1 made no measurable difference on the loaded test machine
(docs/evaluation.md, "Measured throughput"); the full measurement waits for a quiet machine.
"""

import os

WORKERS = None
THREADS = 1
BATCH = {"image-classification": 8, "object-detection": 1}


def cores():
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def workers():
    """The default number of workers (WORKERS, or one per core)."""
    return WORKERS or cores()
