"""Teaching material that runs: exercises a learner solves in the notebooks, graded by refimpl itself.

`exercises.py` runs a learner's function (a bottleneck block, scaled dot-product attention, DETR's
box decoding) inside the reference pipeline, compares the tensors it produces with the reference's
through `refimpl.conformance.compare` (whose diagnosis names the first divergence), and names the
learner's bug by re-running the reference with each typical mistake until one reproduces the answer.
"""
