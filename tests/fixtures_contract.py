"""Contract/server session fixtures (owned by the contract work): small images, the contract's
models pointed at the synthesized checkpoints, and a server on a free loopback port."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

RESNET = "@cf/microsoft/resnet-50"
DETR = "@cf/facebook/detr-resnet-50"


def encoded_image(w, h, fmt="PNG", seed=0):
    """Encoded bytes of a small smooth-plus-noise RGB image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 100 * np.sin((x + y) / 4)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="session")
def small_png():
    """A 40x30 PNG (ResNet-50 resizes everything to 224, so small images are as good as big ones)."""
    return encoded_image(40, 30, "PNG", seed=1)


@pytest.fixture(scope="session")
def small_jpeg():
    return encoded_image(36, 28, "JPEG", seed=2)


@pytest.fixture(scope="session")
def detr_image():
    """A 480x320 JPEG for DETR (about 50 KB, under the test server's 64 KiB body limit)."""
    return encoded_image(480, 320, "JPEG", seed=3)


@pytest.fixture(scope="session")
def contract_weights(resnet50_dir):
    """{model key: checkpoint folder} for run(weights=...) and ContractServer(weights=...).
    DETR's entry is added by `detr_weights` when the DETR checkpoint fixture exists."""
    return {"resnet-50": str(resnet50_dir)}


# DETR's official preprocessing resizes every image to a shortest edge of 800: seconds per run in
# numpy. The contract does not depend on the input size, so the contract tests run the
# synthesized checkpoint with a smaller resize (as the DETR tests' SMALL_PREPROCESSOR does).
DETR_TEST_SIZE = {"shortest_edge": 256, "longest_edge": 384}


@pytest.fixture(scope="session")
def detr_weights(detr_timm_dir, contract_weights, tmp_path_factory):
    """A checkpoint folder with the synthesized DETR's weights and config (symlinked from
    `detr_timm_dir`) and a preprocessor_config.json resizing to DETR_TEST_SIZE."""
    source = Path(detr_timm_dir)
    folder = tmp_path_factory.mktemp("detr-contract")
    for name in ("model.safetensors", "config.json"):
        try:
            (folder / name).symlink_to(source / name)
        except OSError:
            shutil.copyfile(source / name, folder / name)
    preprocessor = json.loads((source / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps(dict(preprocessor, size=DETR_TEST_SIZE)))
    contract_weights["detr-resnet-50"] = str(folder)
    return str(folder)


@pytest.fixture(scope="session")
def detr_all_queries(detr_weights, detr_image):
    """run() of DETR on detr_image with every query (threshold None): our own output, reference
    shape, computed once per session."""
    from refimpl.serving import contract

    return contract.run(DETR, detr_image, threshold=None, weights=detr_weights)


@pytest.fixture(scope="module")
def contract_server(contract_weights):
    """A ContractServer on 127.0.0.1, a free port, no token, small body limit (64 KiB), logging
    into `server.lines`. Stopped at the end of the module."""
    yield from running_server(contract_weights)


def running_server(contract_weights, **options):
    """Generator for a module fixture: a started ContractServer on 127.0.0.1 and a free port, 64 KiB
    body limit, logging into `server.lines`, `options` passed on (request_timeout, ...); stopped
    when the fixture ends."""
    from refimpl.serving.server import ContractServer

    lines = []
    server = ContractServer(("127.0.0.1", 0), max_body=64 * 1024, weights=contract_weights, log=lines.append, **options)
    server.lines = lines
    server.start()
    yield server
    server.stop()


def recv_all(sock, deadline=None, resets=False):
    """Every byte the peer sends until it closes the connection (or resets it, when `resets`: a
    server may answer and reset a connection whose request it refused). With `deadline`
    (time.monotonic()), fails the test when the answer is not complete by then."""
    import time

    chunks = []
    while True:
        assert deadline is None or time.monotonic() < deadline, "no answer within the time limit"
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            if not resets:
                raise
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
