"""Fuzzing the safetensors reader (issue 14): random header lengths, JSON headers, dtypes, shapes
and offsets. The only allowed outcomes are the tensors the header describes, exactly, or a
BadWeightsFileError naming the file: never another exception (a traceback), a crash or a hang."""

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refimpl.errors import BadWeightsFileError
from refimpl.pipeline import weights

NUMPY_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I8": np.int8, "U8": np.uint8,
                "I16": np.int16, "U16": np.uint16, "I32": np.int32, "U32": np.uint32, "I64": np.int64,
                "U64": np.uint64, "BOOL": np.bool_}
DTYPES = sorted(weights.SAFETENSORS_DTYPES) + ["F33", "f32", "", "float32"]

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def tensor_files(draw):
    """(file bytes, header dict or None): mostly well-formed files with one thing wrong, some
    entirely random."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200)), None
    names = draw(st.lists(st.text(min_size=1, max_size=8), min_size=0, max_size=4, unique=True))
    header, data, offset = {}, b"", 0
    for name in names:
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(-2, 5) if draw(st.booleans()) else st.integers(0, 4), max_size=3))
        size = weights.SAFETENSORS_DTYPES.get(dtype, 4) * int(np.prod([max(d, 0) for d in shape]))
        begin, end = offset, offset + size
        if draw(st.integers(0, 4)) == 0:  # a wrong offset
            begin, end = draw(st.integers(-5, 2**64)), draw(st.integers(-5, 2**64))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
        if draw(st.integers(0, 9)) == 0:  # an entry with a wrong structure
            header[name] = draw(st.sampled_from([None, [], {"dtype": dtype}, dict(header[name], extra=1)]))
        data += draw(st.binary(min_size=size, max_size=size))
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.sampled_from([{"format": "pt"}, {"n": 1}, None, []]))
    raw = json.dumps(header).encode()
    raw += b" " * draw(st.integers(0, 7))
    length = len(raw)
    how = draw(st.integers(0, 9))
    if how == 0:
        length = draw(st.integers(0, 2**64 - 1))  # any 8 bytes
    elif how == 1:
        length = max(len(raw) + draw(st.integers(-10, 10)), 0)
    body = data + draw(st.binary(max_size=8)) if draw(st.integers(0, 4)) == 0 else data
    if draw(st.integers(0, 9)) == 0:
        body = body[: draw(st.integers(0, len(body)))]  # truncated
    return struct.pack("<Q", length) + raw + body, (header if how == 2 or how > 2 else None)


@FUZZ
@given(tensor_files())
def test_random_safetensors_files(tmp_path, case):
    content, _ = case
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    try:
        tensors = weights.read_safetensors(path)
    except BadWeightsFileError as e:
        assert str(path) in str(e)
        return
    # Accepted: every tensor is what the header says it is.
    n = struct.unpack("<Q", content[:8])[0]
    header = json.loads(content[8:8 + n])
    data = content[8 + n:]
    described = {k: v for k, v in header.items() if k != "__metadata__"}
    assert sorted(tensors) == sorted(described)
    for name, entry in described.items():
        dtype = NUMPY_DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        want = np.frombuffer(data[begin:end], dtype=np.dtype(dtype).newbyteorder("<")).reshape(entry["shape"])
        got = tensors[name]
        assert got.shape == tuple(entry["shape"]) and got.dtype == dtype
        assert got.tobytes() == want.astype(dtype).tobytes()


@pytest.mark.parametrize("length", [0, 1, 7, 2**63, 2**64 - 1])
def test_header_length_extremes(tmp_path, length):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", length) + b'{"a": 1}')
    with pytest.raises(BadWeightsFileError, match="not a valid safetensors file"):
        weights.read_safetensors(path)
