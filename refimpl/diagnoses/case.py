"""What a "tensor" diagnosis looks at: A (the other implementation's tensor) against the reference B.

`TensorCase` holds both tensors in float64 (a leading batch axis of size 1 that only one side has
is dropped), the tolerance, and the optional evidence (the tensor's name, the batch norm that
produced it, the image and preprocessor for `pixel_values`). The fits several diagnoses share
(the channel-order search, the per-channel least-squares fits) are computed once per case.

`close(a, b, rtol, atol)` is the one "A reproduces B" test every diagnosis uses: same shape, all
finite, max|A - B| <= atol + rtol * max|B| (compare's own rule).
"""

from functools import cached_property

import numpy as np

from refimpl.numerics import as_float64, squeeze_batch


def close(a, b, rtol, atol):
    """Same shape, every element finite, and max|A - B| <= atol + rtol * max|B|."""
    if a.shape != b.shape:
        return False
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    scale = float(np.abs(b).max()) if b.size else 0.0
    return float(np.abs(a - b).max(initial=0.0)) <= atol + rtol * scale


def fmt(x):
    """A number in a diagnosis's message."""
    return f"{x:.6g}"


class TensorCase:
    """A against the reference B at one tensor.

    a, b: float64 arrays (batch axis squeezed when only one side has it). shape_a, shape_b: the
    shapes as given. same_shape: a.shape == b.shape after the squeeze (most diagnoses need it;
    the shape diagnoses need it False). rtol, atol: compare's tolerance. name: the tensor's name
    or None. bn: {"running_var": (C,), "eps": B's eps, "module"?} of the batch norm that produced
    the tensor, or None. resize: {"images", "config", "task"} for `pixel_values`, or None."""

    def __init__(self, a, b, rtol, atol, *, name=None, bn=None, resize=None):
        a, b = as_float64(np.asarray(a)), as_float64(np.asarray(b))
        self.shape_a, self.shape_b = a.shape, b.shape
        if a.shape != b.shape:
            a, b, _ = squeeze_batch(a, b)
        self.a, self.b = a, b
        self.same_shape = a.shape == b.shape
        self.rtol, self.atol = rtol, atol
        self.name, self.bn, self.resize = name, bn, resize
        self._memo = {}

    def memo(self, compute):
        """compute(self), computed once per case: a search several diagnoses share (the channel
        order, the resize candidates)."""
        if compute not in self._memo:
            self._memo[compute] = compute(self)
        return self._memo[compute]

    def close(self, x, y, factor=1):
        """close(x, y) under this case's tolerance (times `factor`)."""
        return close(x, y, self.rtol * factor, self.atol * factor)

    @property
    def limit(self):
        """The largest difference within the tolerance: atol + rtol * max|B|."""
        return self.atol + self.rtol * float(np.abs(self.b).max(initial=0.0))

    @property
    def vector(self):
        """One element per index (logits (1, 1000), a (N,) vector): per-channel fits are meaningless
        (with one element per channel they always fit)."""
        b = self.b
        return b.ndim >= 1 and b.size == max(b.shape)

    @property
    def channels(self):
        """An (N, C, ...) tensor with more than one element per channel: per-channel fits apply."""
        return self.same_shape and self.b.ndim >= 2 and not self.vector

    @cached_property
    def per_channel(self):
        """Per-channel least-squares offset and scale of A against B along axis 1 -> (offset, scale),
        each shaped to broadcast against B."""
        a, b = self.a, self.b
        n = a.shape[1]
        A = np.moveaxis(a, 1, 0).reshape(n, -1)
        B = np.moveaxis(b, 1, 0).reshape(n, -1)
        offset = (A - B).mean(1)
        denom = (B * B).sum(1)
        scale = np.where(denom > 0, (A * B).sum(1) / np.where(denom > 0, denom, 1), 1.0)
        shape = [1] * a.ndim
        shape[1] = n
        return offset.reshape(shape), scale.reshape(shape)

    @cached_property
    def per_channel_affine(self):
        """Least-squares A[:, c] = s[c] * B[:, c] + t[c] per channel -> (s, t), each (C,), if it
        reproduces A within the tolerance, else None."""
        a, b = self.a, self.b
        n = b.shape[1]
        A = np.moveaxis(a, 1, 0).reshape(n, -1)
        B = np.moveaxis(b, 1, 0).reshape(n, -1)
        if A.shape[1] < 2:
            return None
        bm, am = B.mean(1, keepdims=True), A.mean(1, keepdims=True)
        var = ((B - bm) ** 2).sum(1)
        s = np.where(var > 0, ((A - am) * (B - bm)).sum(1) / np.where(var > 0, var, 1), 1.0)
        t = am.ravel() - s * bm.ravel()
        if np.any(s == 0):
            return None
        shape = [1] * a.ndim
        shape[1] = n
        if self.close((a - t.reshape(shape)) / s.reshape(shape), b):
            return s, t
        return None
