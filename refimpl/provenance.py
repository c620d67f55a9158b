"""What computed a number: content hashes and the numeric environment. A leaf module (it imports
nothing of refimpl), used by the loader, traces, golden sets and audits alike."""

import hashlib
import os
import platform

import numpy as np


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path, chunk=1 << 22):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def environment():
    """Python, numpy and its BLAS, as numpy itself reports them."""
    env = {"python": platform.python_version(), "machine": platform.machine(), "numpy": np.__version__}
    try:
        config = np.show_config(mode="dicts")
    except Exception:  # noqa: BLE001 - older numpy: no dict mode; versions are still recorded
        config = {}
    deps = config.get("Build Dependencies", {})
    for lib in ("blas", "lapack"):
        if lib in deps:
            env[lib] = {k: deps[lib].get(k) for k in ("name", "version", "openblas configuration") if deps[lib].get(k)}
    simd = config.get("SIMD Extensions", {})
    if simd:
        env["simd"] = {"baseline": simd.get("baseline", []), "found": simd.get("found", [])}
    blas_env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ}
    if blas_env:
        env["blas_environment"] = blas_env
    return env
