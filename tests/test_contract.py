"""run(): the hosted API's contract (issue 4, part 1; issue 8's output shapes).

Every output is validated against the seeds' output schema with the `jsonschema` package (test
only); inputs in both forms; hypothesis generates valid and invalid {"image": [...]} payloads.
"""

import json
import math
import threading
import types
import time

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import refimpl
from refimpl.serving import contract
from refimpl import errors
from refimpl.audit import judge
from refimpl.pipeline import postprocess
from refimpl.serving import schemas
from refimpl import registry
from fixtures_contract import DETR, RESNET, encoded_image

NAMES = {RESNET: "microsoft/resnet-50", DETR: "facebook/detr-resnet-50"}


def check_schema(model, result):
    jsonschema.validate(result, registry.get(model).output_schema)
    assert schemas.validate(result, registry.get(model).output_schema) == []  # our validator agrees


# --- the schemas as data ------------------------------------------------------------------------

def test_schemas_are_valid_json_schemas():
    jsonschema.Draft202012Validator.check_schema(schemas.INPUT_SCHEMA)
    for spec in registry.MODELS:
        jsonschema.Draft202012Validator.check_schema(spec.output_schema)
    assert {spec.hosted_name for spec in registry.HOSTED} == {RESNET, DETR}
    assert schemas.DETECTION_OUTPUT["items"]["properties"]["box"]["properties"].keys() == {
        "xmin", "ymin", "xmax", "ymax"}


def test_input_schema_accepts_both_forms(small_png):
    jsonschema.validate({"image": list(small_png)}, schemas.INPUT_SCHEMA)
    jsonschema.validate("raw bytes travel as a binary string", schemas.INPUT_SCHEMA)
    assert schemas.validate(small_png, schemas.INPUT_SCHEMA) == []  # Python bytes = binary string
    assert schemas.validate({"image": list(small_png)}, schemas.INPUT_SCHEMA) == []
    assert schemas.validate({"image": ["x"]}, schemas.INPUT_SCHEMA)


# --- classification -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def png_result(small_png, contract_weights):
    return contract.run(RESNET, small_png, weights=contract_weights["resnet-50"])


def test_raw_bytes(png_result, resnet50, small_png):
    check_schema(RESNET, png_result)
    assert len(png_result) == 5
    assert [r["score"] for r in png_result] == sorted((r["score"] for r in png_result), reverse=True)
    assert png_result == resnet50(small_png)  # the same model behind run()


def test_array_form_equals_raw(png_result, small_png, contract_weights):
    w = contract_weights["resnet-50"]
    assert contract.run(RESNET, {"image": list(small_png)}, weights=w) == png_result
    whole_floats = [float(b) for b in small_png]
    assert contract.run(RESNET, {"image": whole_floats, "other": "ignored"}, weights=w) == png_result
    assert contract.run(RESNET, bytearray(small_png), weights=w) == png_result


@pytest.mark.parametrize("name", [RESNET, NAMES[RESNET]])
def test_model_names(name, png_result, small_png, contract_weights):
    assert contract.run(name, small_png, weights=contract_weights["resnet-50"]) == png_result


def test_top_level_run_and_env_weights(monkeypatch, png_result, small_png, resnet50_dir):
    monkeypatch.setenv("REFIMPL_RESNET50_WEIGHTS", str(resnet50_dir))
    assert refimpl.run(RESNET, small_png) == png_result


def test_output_options(small_jpeg, contract_weights):
    w = contract_weights["resnet-50"]
    top3 = contract.run(RESNET, small_jpeg, weights=w, top_k=3)
    raw = contract.run(RESNET, small_jpeg, weights=w, top_k=3, labels="raw")
    check_schema(RESNET, top3)
    check_schema(RESNET, raw)
    assert len(top3) == 3
    assert [r["score"] for r in raw] == [r["score"] for r in top3]
    assert [r["label"].split(",")[0].upper() for r in raw] == [r["label"] for r in top3]


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w=st.integers(8, 48), h=st.integers(8, 48), seed=st.integers(0, 2**16),
       fmt=st.sampled_from(["PNG", "JPEG", "BMP"]), as_floats=st.booleans())
def test_hypothesis_images_end_to_end(contract_weights, w, h, seed, fmt, as_floats):
    """Both input forms of random images give schema-valid, identical answers."""
    data = encoded_image(w, h, fmt, seed)
    weights = contract_weights["resnet-50"]
    raw = contract.run(RESNET, data, weights=weights)
    check_schema(RESNET, raw)
    array = [float(b) for b in data] if as_floats else list(data)
    jsonschema.validate({"image": array}, schemas.INPUT_SCHEMA)
    assert contract.run(RESNET, {"image": array}, weights=weights) == raw


# --- validation of {"image": [...]} -------------------------------------------------------------

# Every way an element can be bad: (typed error, a value of that kind, message fragment).
BAD_ELEMENTS = {
    "out of range (256)": (errors.ValueOutOfRangeError, 256, "outside 0..255"),
    "out of range (-1)": (errors.ValueOutOfRangeError, -1, "outside 0..255"),
    "out of range float": (errors.ValueOutOfRangeError, 255.5, "outside 0..255"),
    "huge int": (errors.ValueOutOfRangeError, 10**400, "outside 0..255"),
    "fractional": (errors.FractionalValueError, 12.5, "not a whole number"),
    "nan": (errors.NonFiniteValueError, math.nan, "finite"),
    "inf": (errors.NonFiniteValueError, math.inf, "finite"),
    "-inf": (errors.NonFiniteValueError, -math.inf, "finite"),
    "true": (errors.BooleanValueError, True, "boolean"),
    "false": (errors.BooleanValueError, False, "boolean"),
    "string": (errors.NonNumericValueError, "12", "a string"),
    "null": (errors.NonNumericValueError, None, "null"),
    "nested array": (errors.NestedArrayError, [1, 2], "an array"),
    "nested empty array": (errors.NestedArrayError, [], "an array"),
    "nested object": (errors.NestedArrayError, {"a": 1}, "an object"),
}

BAD_INPUTS = {
    "missing image": ({}, errors.MissingImageError, 'no "image" key'),
    "misspelt image": ({"imgae": [1, 2]}, errors.MissingImageError, "'imgae'"),
    "image is a string": ({"image": "iVBORw0KGgo="}, errors.ImageArrayTypeError, "got a string"),
    "image is bytes": ({"image": b"\x89PNG"}, errors.ImageArrayTypeError, "list(data)"),
    "image is an object": ({"image": {"0": 1}}, errors.ImageArrayTypeError, "got an object"),
    "image is null": ({"image": None}, errors.ImageArrayTypeError, "got null"),
    "image is a number": ({"image": 7}, errors.ImageArrayTypeError, "got int"),
    "empty array": ({"image": []}, errors.EmptyImageArrayError, "empty array"),
    "top-level list": ([137, 80, 78, 71], errors.InputTypeError, '{"image": [...]}'),
    "top-level str": ("examples/cat.png", errors.InputTypeError, "a str is not image bytes"),
    "top-level None": (None, errors.InputTypeError, "got null"),
    "top-level int": (3, errors.InputTypeError, "got int"),
    "top-level ndarray": (np.zeros(4, np.uint8), errors.InputTypeError, "ndarray"),
    "empty bytes": (b"", errors.EmptyImageError, "empty"),
    "not an image": (b"hello, world", errors.NotAnImageError, "not an image"),
    "array of pixels, not a file": ({"image": [0, 0, 0] * 50}, errors.NotAnImageError, "not decoded pixels"),
}


@pytest.mark.parametrize("case", list(BAD_ELEMENTS))
def test_bad_element(case, small_png):
    error, value, fragment = BAD_ELEMENTS[case]
    array = list(small_png[:50])
    array[17] = value
    with pytest.raises(error) as e:
        contract.run(RESNET, {"image": array})  # refused before any model is loaded
    assert "image[17]" in str(e.value) and fragment in str(e.value)
    assert e.value.status == 400 and e.value.code == 5004
    assert isinstance(e.value, errors.InvalidInputError)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs(case):
    inputs, error, fragment = BAD_INPUTS[case]
    with pytest.raises(error) as e:
        contract.run(RESNET, inputs)
    assert fragment in str(e.value)
    assert e.value.status == 400


def test_decoding_errors_propagate(small_png):
    truncated = small_png[: len(small_png) // 2]
    for inputs in (truncated, {"image": list(truncated)}):
        with pytest.raises(errors.TruncatedImageError):
            contract.run(RESNET, inputs)


def test_first_bad_element_is_named(small_png):
    array = list(small_png[:40])
    array[5], array[9] = 3.5, 300
    with pytest.raises(errors.FractionalValueError, match=r"image\[5\]"):
        contract.image_bytes({"image": array})
    array[5] = 300.0  # a float and an int beyond range: the first one is reported
    with pytest.raises(errors.ValueOutOfRangeError, match=r"image\[5\]"):
        contract.image_bytes({"image": array})


def test_unknown_models():
    for model in ("@cf/microsoft/resnet-101", "resnet-26", "", "@cf/facebook/detr-resnet-50 ", None, 50):
        with pytest.raises(errors.UnknownModelError) as e:
            contract.run(model, b"x")
        assert e.value.status == 404 and e.value.code == 3042
        assert "@cf/microsoft/resnet-50" in str(e.value)  # names the models it knows


@pytest.mark.parametrize("model,options,fragment", [
    (RESNET, {"top_k": 0}, "top_k"),
    (RESNET, {"top_k": 2.5}, "top_k"),
    (RESNET, {"top_k": True}, "top_k"),
    (RESNET, {"labels": "fancy"}, "labels"),
    (RESNET, {"shape": "hosted"}, "unknown option"),
    (DETR, {"top_k": 3}, "unknown option"),
    (DETR, {"shape": "pretty"}, "shape"),
    (DETR, {"threshold": 1.5}, "threshold"),
    (DETR, {"threshold": "0.5"}, "threshold"),
    (DETR, {"wrap_uint16": 1}, "wrap_uint16"),
    (DETR, {"wrap_uint16": True}, "shape='hosted'"),
])
def test_bad_options(model, options, fragment, small_png):
    with pytest.raises(errors.InvalidOptionError, match=fragment):
        contract.run(model, small_png, **options)


def test_query_options():
    assert contract.parse_query_options(RESNET, {"top_k": "3", "labels": "raw"}) == {"top_k": 3, "labels": "raw"}
    assert contract.parse_query_options(DETR, {"shape": "hosted", "wrap_uint16": "1"}) == {
        "shape": "hosted", "threshold": None, "wrap_uint16": True}
    assert contract.parse_query_options(DETR, {"threshold": "none"})["threshold"] is None
    assert contract.parse_query_options(DETR, {})["threshold"] == 0.5
    for query in ({"top_k": "x"}, {"nope": "1"}):
        with pytest.raises(errors.InvalidOptionError):
            contract.parse_query_options(RESNET, query)
    with pytest.raises(errors.InvalidOptionError):
        contract.parse_query_options(DETR, {"threshold": "high"})


# --- hypothesis: valid and invalid {"image": [...]} payloads ------------------------------------

byte_values = st.integers(0, 255)
whole_floats = st.integers(0, 255).map(float)
valid_arrays = st.lists(st.one_of(byte_values, whole_floats), min_size=1, max_size=300)

bad_values = st.one_of(
    st.integers(max_value=-1).map(lambda v: (errors.ValueOutOfRangeError, v)),
    st.integers(min_value=256).map(lambda v: (errors.ValueOutOfRangeError, v)),
    st.floats(min_value=256, allow_infinity=False).map(lambda v: (errors.ValueOutOfRangeError, v)),
    st.floats(max_value=-1e-9, allow_infinity=False).map(lambda v: (errors.ValueOutOfRangeError, v)),
    st.floats(0, 255).filter(lambda v: not v.is_integer()).map(lambda v: (errors.FractionalValueError, v)),
    st.sampled_from([math.nan, math.inf, -math.inf]).map(lambda v: (errors.NonFiniteValueError, v)),
    st.booleans().map(lambda v: (errors.BooleanValueError, v)),
    st.one_of(st.text(max_size=5), st.none()).map(lambda v: (errors.NonNumericValueError, v)),
    st.lists(byte_values, max_size=3).map(lambda v: (errors.NestedArrayError, v)),
    st.dictionaries(st.text(max_size=2), byte_values, max_size=2).map(lambda v: (errors.NestedArrayError, v)),
)


@settings(max_examples=300, deadline=None)
@given(array=valid_arrays)
def test_valid_payloads_give_the_bytes(array):
    payload = {"image": array}
    jsonschema.validate(payload, schemas.INPUT_SCHEMA)
    assert contract.image_bytes(payload) == bytes(int(v) for v in array)


@settings(max_examples=300, deadline=None)
@given(array=valid_arrays, bad=bad_values, where=st.integers(0, 10**6))
def test_invalid_payloads_are_named(array, bad, where):
    error, value = bad
    i = where % (len(array) + 1)
    array = array[:i] + [value] + array[i:]
    with pytest.raises(error) as e:
        contract.image_bytes({"image": array})
    assert f"image[{i}]" in str(e.value)
    assert isinstance(e.value, errors.InvalidInputError) and e.value.status == 400


@settings(max_examples=100, deadline=None)
@given(inputs=st.one_of(st.none(), st.integers(), st.floats(), st.text(), st.lists(byte_values),
                        st.dictionaries(st.text().filter(lambda k: k != "image"), byte_values)))
def test_invalid_top_level(inputs):
    with pytest.raises((errors.InputTypeError, errors.MissingImageError)):
        contract.image_bytes(inputs)


# --- loading once, thread-safe ------------------------------------------------------------------

@pytest.fixture
def counting_loader(monkeypatch):
    """Replace the loaders with a slow one that counts its calls; restore the cache after."""
    calls = []
    lock = threading.Lock()

    def slow_load(spec, source, revision, dtype, path):
        with lock:
            calls.append(source)
        time.sleep(0.2)
        return types.SimpleNamespace(path=path)

    saved = dict(contract._cache)
    monkeypatch.setattr(contract, "_load", slow_load)
    yield calls
    with contract._cache_lock:
        contract._cache.clear()
        contract._cache.update(saved)


def test_concurrent_first_calls_load_once(counting_loader):
    got, barrier = [], threading.Barrier(8)

    def worker(model):
        barrier.wait()
        got.append(contract.get_model(model, weights="fake-checkpoint-dir"))

    threads = [threading.Thread(target=worker, args=([RESNET, NAMES[RESNET]][i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counting_loader == ["fake-checkpoint-dir"]  # loaded exactly once
    assert len(got) == 8 and all(m is got[0] for m in got)
    assert contract.get_model(RESNET, weights="fake-checkpoint-dir") is got[0]  # and reused


def test_models_load_in_parallel(counting_loader):
    start = time.perf_counter()
    threads = [threading.Thread(target=contract.get_model, args=(m,), kwargs={"weights": f"fake-{m[-5:]}"})
               for m in (RESNET, DETR)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(counting_loader) == 2
    assert time.perf_counter() - start < 0.39  # two 0.2 s loads, not one after the other


def test_different_weights_are_different_models(counting_loader):
    a = contract.get_model(RESNET, weights="fake-a")
    b = contract.get_model(RESNET, weights="fake-b")
    c = contract.get_model(RESNET, weights="fake-a", dtype="float64")
    assert len({id(a), id(b), id(c)}) == 3 and len(counting_loader) == 3


# --- detection shapes (issue 8) -----------------------------------------------------------------

FAKE = [
    {"score": 0.2, "label": "cat", "box": {"xmin": -2.4, "ymin": 3.5, "xmax": 10.49, "ymax": 20.51}},
    {"score": 0.9, "label": "dog", "box": {"xmin": 1.2, "ymin": -0.6, "xmax": 30.0, "ymax": 40.7}},
    {"score": 0.2, "label": "cup", "box": {"xmin": 0.5, "ymin": 1.5, "xmax": 2.5, "ymax": 9.9}},
]


def test_hosted_shape_function():
    out = postprocess.hosted_shape(FAKE)
    assert [d["label"] for d in out] == ["dog", "cat", "cup"]  # by score, ties keep query order
    assert out[1]["box"] == {"xmin": -2, "ymin": 4, "xmax": 10, "ymax": 21}
    assert out[0]["box"] == {"xmin": 1, "ymin": -1, "xmax": 30, "ymax": 41}
    assert out[2]["box"] == {"xmin": 0, "ymin": 2, "xmax": 2, "ymax": 10}  # ties to even
    assert all(type(v) is int for d in out for v in d["box"].values())
    wrapped = postprocess.hosted_shape(FAKE, wrap_uint16=True)
    assert wrapped[1]["box"]["xmin"] == 65534 and wrapped[0]["box"]["ymin"] == 65535
    jsonschema.validate(out, schemas.DETECTION_OUTPUT)
    jsonschema.validate(wrapped, schemas.DETECTION_OUTPUT)


def test_detection_shapes(detr_all_queries, detr_weights, detr_image):
    """Two DETR runs (each takes seconds): the reference default by HF id, and the hosted shape
    with the uint16 switch from the array form; both derived from the every-query output."""
    every = detr_all_queries
    assert len(every) == 100
    check_schema(DETR, every)
    reference = contract.run(NAMES[DETR], detr_image, weights=detr_weights)
    check_schema(DETR, reference)
    assert reference == [d for d in every if d["score"] > 0.5]  # threshold 0.5, query order
    wrapped = contract.run(DETR, {"image": list(detr_image)}, weights=detr_weights, shape="hosted", wrap_uint16=True)
    check_schema(DETR, wrapped)
    assert wrapped == postprocess.hosted_shape(every, wrap_uint16=True)
    assert [d["score"] for d in wrapped] == sorted((d["score"] for d in every), reverse=True)
    assert all(type(v) is int and 0 <= v <= 65535 for d in wrapped for v in d["box"].values())


# --- the CLI: refimpl run -----------------------------------------------------------------------

def test_cli_run(tmp_path, small_png, png_result, resnet50_dir, capsys):
    from refimpl import cli

    image = tmp_path / "small.png"
    image.write_bytes(small_png)
    assert cli.main(["run", RESNET, str(image), "--weights", str(resnet50_dir), "--input-form", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == png_result
    assert cli.main(["run", NAMES[RESNET], str(image), "--weights", str(resnet50_dir), "--envelope", "--top-k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"result": png_result[:2], "success": True, "errors": [], "messages": []}
    assert cli.main(["run", RESNET, str(image), "--shape", "hosted"]) == 2
    assert "InvalidOptionError" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # a usage error, reported by argparse with the names it knows
        cli.main(["run", "@cf/nope", str(image)])
    assert e.value.code == 2 and "unknown model '@cf/nope'" in capsys.readouterr().err


def test_cli_run_detection_options(tmp_path, monkeypatch, capsys):
    """The DETR output-shape options reach run() (the DETR runs themselves are tested above)."""
    from refimpl import cli

    seen = []
    monkeypatch.setattr(contract, "run", lambda model, inputs, **kw: seen.append((model, kw)) or [])
    image = tmp_path / "x.png"
    image.write_bytes(b"x")
    assert cli.main(["run", DETR, str(image), "--shape", "hosted", "--wrap-uint16"]) == 0
    assert cli.main(["run", DETR, str(image), "--threshold", "none"]) == 0
    assert cli.main(["run", DETR, str(image), "--threshold", "0.7"]) == 0
    capsys.readouterr()
    loading = {"weights": None, "revision": None, "dtype": "float32", "path": "fast"}  # revision None: the default, main
    assert seen == [(DETR, dict(loading, shape="hosted", wrap_uint16=True)), (DETR, dict(loading, threshold=None)),
                    (DETR, dict(loading, threshold=0.7))]


# --- hardening (issue 14): the contract never emits invalid JSON ---------------------------------

@pytest.fixture(scope="module")
def overflowing_dir(tmp_path_factory, resnet50_dir):
    """Finite weights whose logits overflow float32: every classifier weight 3e38 times the
    pooled features (non-negative after ReLU, summing to more than 1) is +inf for every class,
    and softmax of +inf logits is NaN. Such weights load (every value is finite); the answer must not."""
    from hf_trace import small_checkpoint

    def scale(t):
        t["classifier.1.weight"] = np.full_like(t["classifier.1.weight"], 3e38)
        return t

    return small_checkpoint(tmp_path_factory.mktemp("overflow"), resnet50_dir, size={"shortest_edge": 64}, edit=scale)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_non_finite_output_is_a_typed_error(overflowing_dir, small_png):
    """Item 5: `refimpl run` printed "score": NaN (not JSON) and the server dropped the connection."""
    with pytest.raises(errors.NonFiniteOutputError, match=r"non-finite output \(result\[0\]\['score'\] is nan\)") as e:
        contract.run(RESNET, small_png, weights=str(overflowing_dir))
    assert e.value.code == 5007 and e.value.status == 500


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_non_finite_output_through_the_cli_and_the_server(overflowing_dir, small_png, tmp_path, capsys):
    import http.client

    from refimpl import cli
    from refimpl.serving.server import ContractServer

    image = tmp_path / "small.png"
    image.write_bytes(small_png)
    assert cli.main(["run", RESNET, str(image), "--weights", str(overflowing_dir)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "NonFiniteOutputError" in err and "NaN" not in out
    server = ContractServer(("127.0.0.1", 0), weights={"resnet-50": str(overflowing_dir)}, log=lambda line: None).start()
    try:
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
        conn.request("POST", "/client/v4/accounts/a/ai/run/" + RESNET, body=small_png)
        response = conn.getresponse()
        body = json.loads(response.read())  # strict JSON: Python's parser would take NaN, so check the text too
        assert response.status == 500 and body["errors"][0]["code"] == 5007 and body["success"] is False
    finally:
        server.stop()


def test_cli_run_missing_file_is_a_typed_error(tmp_path, capsys):
    """Item 8: `refimpl run` on a missing file said `error: [Errno 2]`; now as `classify` says it."""
    from refimpl import cli

    assert cli.main(["run", RESNET, str(tmp_path / "nope.png")]) == 2
    err = capsys.readouterr().err
    assert "InvalidInputError" in err and "image file not found" in err and "Errno" not in err


def test_classify_refuses_a_bad_image_before_loading(tmp_path, capsys, monkeypatch):
    """Item 8: `classify` read 100 MB of weights before refusing a bad image."""
    from refimpl import cli

    monkeypatch.setattr(registry, "load", lambda *a, **k: pytest.fail("weights loaded before the image was checked"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    assert cli.main(["classify", str(bad)]) == 2
    assert "not an image" in capsys.readouterr().err


@pytest.mark.parametrize("config, fragment", [
    ([1, 2], "config.json must be a JSON object"),
    ({"d_model": "256"}, "'d_model' must be an integer"),
    ({"encoder_layers": 10**6}, "'encoder_layers' must be an integer 1..64"),
    ({"num_queries": 0}, "'num_queries' must be an integer"),
    ({"id2label": ["a", "b"]}, "'id2label' must be an object"),
    ({"backbone_config": {"model_type": "resnet", "out_features": 7}}, "out_features"),
])
def test_detr_config_fields_are_checked(config, fragment):
    """Item 6: a DETR config.json that is a list (or holds wrong types) was a traceback."""
    from refimpl.models import detr

    with pytest.raises(errors.ConfigFileError, match=fragment):
        detr.expected_shapes(config)


def test_malformed_config_through_the_server_is_5007(tmp_path, resnet50_dir, small_png):
    """Item 6: through the server a list config.json was 500/3000 (an internal error); it is a
    weights problem, 5007."""
    import http.client
    import shutil

    from refimpl.serving.server import ContractServer

    folder = tmp_path / "bad-config"
    folder.mkdir()
    shutil.copy(resnet50_dir / "preprocessor_config.json", folder)
    (folder / "model.safetensors").symlink_to(resnet50_dir / "model.safetensors")
    (folder / "config.json").write_text("[1, 2, 3]")
    server = ContractServer(("127.0.0.1", 0), weights={"resnet-50": str(folder)}, log=lambda line: None).start()
    try:
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
        conn.request("POST", "/client/v4/accounts/a/ai/run/" + RESNET, body=small_png)
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 500 and body["errors"][0]["code"] == 5007, body
        assert "config.json must be a JSON object" in body["errors"][0]["message"]
    finally:
        server.stop()
