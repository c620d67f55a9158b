"""refimpl.serving.schemas: the hand-written validator agrees with `jsonschema` on the seeds' schemas,
and envelope() / unwrap() build and read the hosted API's REST envelope.

The validator is held equal to jsonschema's Draft 2020-12 validator on two kinds of generated
instances: arbitrary JSON values (whose dict keys are mostly the schemas' own property names, so
they reach nested keywords), and near-valid ones (a valid instance with one value replaced or one
key removed), so that both verdicts occur. Two deliberate differences are tested separately:
Python bytes are the input schema's binary string (jsonschema knows no bytes), and NaN and the
infinities are not numbers (JSON has none; jsonschema accepts Python's).
"""

import math

import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from refimpl.errors import DecompressionBombError, NotAnImageError
from refimpl.serving import schemas
from refimpl.serving.schemas import envelope, unwrap, validate

SCHEMAS = {
    "input": schemas.INPUT_SCHEMA,
    "classification": schemas.CLASSIFICATION_OUTPUT,
    "detection": schemas.DETECTION_OUTPUT,
    "envelope": schemas.ENVELOPE_SCHEMA,
}
VALIDATORS = {name: jsonschema.Draft202012Validator(s) for name, s in SCHEMAS.items()}

PROPERTY_TESTS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def property_names(schema):
    """Every property name (and required name) anywhere in `schema`."""
    names = set()
    if isinstance(schema, dict):
        names.update(schema.get("properties", {}), schema.get("required", []))
        for value in schema.values():
            names |= property_names(value)
    elif isinstance(schema, list):
        for value in schema:
            names |= property_names(value)
    return names


NAMES = sorted(set().union(*map(property_names, SCHEMAS.values())) | {"response", "inputs"})

# --- JSON values ----------------------------------------------------------------------------------

# Python's json reads integers of any size: beyond float64's range too.
numbers = (st.integers() | st.integers(min_value=10**300, max_value=10**400)
           | st.integers(min_value=-(10**400), max_value=-(10**300)) | st.floats(allow_nan=False, allow_infinity=False))
keys = st.sampled_from(NAMES) | st.text(max_size=5)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=8)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=20)


def valid(schema):
    """Instances of `schema`, for the keywords the seeds use (oneOf, type, properties, required,
    items); keys not in `properties` are allowed and added at random. Unconstrained values are
    scalars, so that most places near_valid() can change are ones the schema constrains."""
    if "oneOf" in schema:
        return st.one_of([valid(s) for s in schema["oneOf"]])
    kind = schema.get("type")
    if kind == "number":
        return numbers
    if kind == "integer":
        return st.integers() | st.integers(min_value=-(10**6), max_value=10**6).map(float)
    if kind == "string":
        return st.text(max_size=8)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(valid(schema.get("items", {})), max_size=4)
    if kind == "object":
        props, required = schema.get("properties", {}), schema.get("required", [])
        known = st.fixed_dictionaries({k: valid(props.get(k, {})) for k in required},
                                      optional={k: valid(s) for k, s in props.items() if k not in required})
        others = st.dictionaries(st.text(max_size=5).filter(lambda k: k not in props), scalars, max_size=2)
        return st.builds(lambda a, b: {**b, **a}, known, others)
    return scalars | st.lists(scalars, max_size=3)


def locations(x, path=()):
    """Every place in x: () for x itself, then (key, ...) paths into its lists and dicts."""
    yield path
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for k, v in items:
        yield from locations(v, path + (k,))


def changed(x, path, value, delete=False):
    """A copy of x with the value at `path` replaced by `value` (or its key removed)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(x) if isinstance(x, dict) else list(x)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = changed(x[head], rest, value, delete)
    return copy


@st.composite
def near_valid(draw, schema):
    """A valid instance of `schema` with one value replaced by any JSON value, or one key removed."""
    x = draw(valid(schema))
    path = draw(st.sampled_from(list(locations(x))))
    delete = bool(path) and isinstance(changed_parent(x, path), dict) and draw(st.booleans())
    return changed(x, path, None if delete else draw(json_values), delete)


def changed_parent(x, path):
    for k in path[:-1]:
        x = x[k]
    return x


def agree(x, name):
    """Our validator reports errors exactly when jsonschema finds x invalid."""
    ours = validate(x, SCHEMAS[name])
    theirs = VALIDATORS[name].is_valid(x)
    assert bool(ours) == (not theirs), (ours, [e.message for e in VALIDATORS[name].iter_errors(x)])
    assert all(isinstance(m, str) and m.startswith("$") for m in ours)


# --- the validator equals jsonschema -----------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY_TESTS
@given(data=st.data())
def test_any_json_value(name, data):
    agree(data.draw(json_values), name)


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY_TESTS
@given(data=st.data())
def test_valid_instances(name, data):
    x = data.draw(valid(SCHEMAS[name]))
    assert VALIDATORS[name].is_valid(x), x  # the generator itself is right
    assert validate(x, SCHEMAS[name]) == []


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY_TESTS
@given(data=st.data())
def test_near_valid_instances(name, data):
    agree(data.draw(near_valid(SCHEMAS[name])), name)


@pytest.mark.parametrize("name", SCHEMAS)
def test_near_valid_instances_reach_both_verdicts(name):
    """The near-valid generator produces valid and invalid instances (not only one kind)."""
    first = settings(database=None, phases=[Phase.generate])  # any example will do: no shrinking
    find(near_valid(SCHEMAS[name]), VALIDATORS[name].is_valid, settings=first)
    find(near_valid(SCHEMAS[name]), lambda x: not VALIDATORS[name].is_valid(x), settings=first)


@pytest.mark.parametrize("name,x", [
    ("classification", [{"label": "TABBY", "score": 10**400}]),  # an integer beyond float64: still a number
    ("classification", [{"label": "TABBY", "score": -(10**400)}]),
    ("envelope", {"result": [], "success": False, "errors": [{"code": 10**400, "message": "m"}], "messages": []}),
    ("envelope", {"result": [], "success": False, "errors": [{"code": 5004.0, "message": "m"}], "messages": []}),
    ("envelope", {"result": [], "success": False, "errors": [{"code": 5004.5, "message": "m"}], "messages": []}),
    ("envelope", {"result": [], "success": 1, "errors": [], "messages": []}),  # 1 is not a boolean
    ("detection", [{"box": {"xmin": True}}]),  # nor is True a number
    ("detection", [{"label": "cat", "score": 0.9, "box": {"xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4}, "x": []}]),
    ("input", {"image": [0, 255, 1.5, -3]}),  # the schema allows any number
    ("input", {"image": [0, "1"]}),
    ("input", {}),
    ("input", "raw"),
    ("input", ["raw"]),
])
def test_examples(name, x):
    agree(x, name)


# --- the deliberate differences from jsonschema ------------------------------------------------------


def test_bytes_are_the_binary_string():
    """Python bytes are the input schema's `format: binary` string (jsonschema knows no bytes)."""
    for data in (b"\x89PNG...", bytearray(b"\xff\xd8"), memoryview(b"GIF8"), b""):
        assert validate(data, schemas.INPUT_SCHEMA) == []
    # only where the schema says binary: not as an output label, nor as the image array
    assert validate([{"label": b"TABBY", "score": 0.5}], schemas.CLASSIFICATION_OUTPUT) == [
        "$[0].label: expected string, got binary"]
    assert validate({"image": b"\x00\x01"}, schemas.INPUT_SCHEMA) == [
        "$: matches 0 of the 2 oneOf alternatives, expected 1"]
    assert validate(b"[]", schemas.CLASSIFICATION_OUTPUT) == ["$: expected array, got binary"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_not_json_numbers(bad):
    x = [{"label": "TABBY", "score": bad}]
    assert VALIDATORS["classification"].is_valid(x)  # jsonschema takes Python's float as it is
    (message,) = validate(x, schemas.CLASSIFICATION_OUTPUT)
    assert message.startswith("$[0].score: ") and "not a JSON number" in message


def test_messages_name_the_place():
    x = [{"label": "cat", "score": 0.9, "box": {"xmin": "1", "ymin": 2, "xmax": 3, "ymax": None}}]
    assert validate(x, schemas.DETECTION_OUTPUT) == ["$[0].box.xmin: expected number, got string",
                                                     "$[0].box.ymax: expected number, got null"]
    assert validate({"result": [], "success": True}, schemas.ENVELOPE_SCHEMA) == [
        "$: missing required property 'errors'", "$: missing required property 'messages'"]


# --- envelope() and unwrap() ----------------------------------------------------------------------------


def test_envelope_of_a_result():
    result = [{"label": "TABBY", "score": 0.9}]
    env = envelope(result)
    assert env == {"result": result, "success": True, "errors": [], "messages": []}
    assert validate(env, schemas.ENVELOPE_SCHEMA) == [] and VALIDATORS["envelope"].is_valid(env)
    assert unwrap(env) == (result, [], [])


@pytest.mark.parametrize("error,code", [(NotAnImageError("not an image"), 5004),
                                        (DecompressionBombError("too many pixels"), 3006)])
def test_envelope_of_an_error(error, code):
    env = envelope(error=error)
    assert env == {"result": None, "success": False, "errors": [{"code": code, "message": str(error)}],
                   "messages": []}
    assert validate(env, schemas.ENVELOPE_SCHEMA) == [] and VALIDATORS["envelope"].is_valid(env)
    result, problems, notes = unwrap(env)
    assert result is None and notes == []
    assert problems == [f"the endpoint reported failure (success=False): [{code}] {error}"]


@PROPERTY_TESTS
@given(json_values)
def test_unwrap_reads_back_any_enveloped_result(result):
    assert unwrap(envelope(result)) == (result, [], [])


@pytest.mark.parametrize("claimed,expected", [
    ([{"label": "A", "score": 1}], ([{"label": "A", "score": 1}], [], [])),
    (({"label": "A", "score": 1},), ([{"label": "A", "score": 1}], [], [])),  # a tuple is an array
    ({"inputs": {"image": []}, "response": []},
     ([], [], ["response is the seeds' Worker example shape {inputs, response}"])),
    ("PERSIAN CAT", (None, ["response is string, expected a result array or the REST envelope"], [])),
    (None, (None, ["response is null, expected a result array or the REST envelope"], [])),
    ({"label": "TABBY"}, (None, ["response is an object that is neither a result array nor the REST envelope"], [])),
    ({"result": [], "success": True}, ([], ["envelope: $: missing required property 'errors'",
                                            "envelope: $: missing required property 'messages'"], [])),
    ({"result": [], "success": True, "errors": [{"code": 1, "message": "m"}], "messages": []},
     (None, ["the endpoint reported failure (success=True): [1] m"], [])),
    ({"success": False},
     (None, ["envelope: $: missing required property 'result'", "envelope: $: missing required property 'errors'",
             "envelope: $: missing required property 'messages'",
             "the endpoint reported failure (success=False): no errors given"], [])),
])
def test_unwrap(claimed, expected):
    assert unwrap(claimed) == expected


@PROPERTY_TESTS
@given(st.one_of(json_values, near_valid(schemas.ENVELOPE_SCHEMA)))
def test_unwrap_judges_the_envelope_like_jsonschema(claimed):
    """Whatever it is given, unwrap answers (result, problems, notes); an envelope breaking the
    envelope schema has an "envelope:" problem, exactly when jsonschema says so."""
    result, problems, notes = unwrap(claimed)
    assert isinstance(problems, list) and isinstance(notes, list)
    assert all(isinstance(p, str) for p in problems + notes)
    is_envelope = (isinstance(claimed, dict) and ("result" in claimed or "success" in claimed)
                   and not ("response" in claimed and "result" not in claimed))
    if is_envelope:
        flagged = any(p.startswith("envelope: ") for p in problems)
        assert flagged == (not VALIDATORS["envelope"].is_valid(claimed))
        failed = claimed.get("success") is not True or bool(claimed.get("errors"))
        assert (result is None) if failed else (result is claimed.get("result"))
    elif not isinstance(claimed, (list, dict)):
        assert result is None and problems


def test_unwrap_with_errors_not_a_list():
    result, problems, _ = unwrap({"result": None, "success": False, "errors": 5004, "messages": []})
    assert result is None and any("envelope: $.errors: expected array" in p for p in problems)
