"""The defaults of `refimpl evaluate`'s parallelism, in one place: set them from a measurement
(`python benchmarks/evaluate_workers.py`, which prints the best configuration it measured and
the lines to put here).

- WORKERS: worker processes; None = one per core this process may run on.
- THREADS: BLAS threads per worker (1 with one worker per core: the cores are not
  oversubscribed). Part of the records' setup: float32 sums round differently with another count.
- BATCH: images per forward, by task. DETR stays at 1: padding a batch would change its answers.

Measured on 1,000 synthesized images, ResNet-50, 2 cores, nothing else running
(benchmarks/results/evaluate_workers.md, 2026-12-01): the one-process loop 8.66 images/s;
1 worker x 2 threads 9.07 (batch 1 or 8); 1 x 1, batch 8: 6.49; 2 workers x 1 thread: 11.15
(batch 1), 11.43 (batch 8), **12.53 (batch 16, 1.45x the loop)**, peak RSS of all processes
1.4 GB. Hence one worker per core, one thread each, batch 16.
"""

import os

WORKERS = None
THREADS = 1
BATCH = {"image-classification": 16, "object-detection": 1}


def cores():
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def workers():
    """The default number of workers (WORKERS, or one per core)."""
    return WORKERS or cores()
