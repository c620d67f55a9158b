"""The hosted API's JSON: the seeds' input and output schemas, a validator for them, and the REST
envelope around every answer.

    >>> from refimpl.serving import schemas
    >>> schemas.validate([{"label": "CAT", "score": 0.9}], schemas.CLASSIFICATION_OUTPUT)
    []
    >>> schemas.envelope([...])                      # {"result", "success", "errors", "messages"}
    >>> result, problems, notes = schemas.unwrap(claimed)   # a bare list, an envelope, or the seeds' example

The validator is small and hand-written (the runtime stays numpy, Pillow, safetensors and
huggingface-hub); tests/test_schemas.py holds it equal to `jsonschema` on the seeds'
schemas with hypothesis-generated instances.
"""

import math

import numpy as np

from refimpl.pipeline.postprocess import BOX_KEYS

# ../shared/seeds/002 (DETR) verbatim; seed 001 (ResNet-50) is the same without descriptions.
INPUT_SCHEMA = {
    "oneOf": [
        {"type": "string", "format": "binary", "description": "The image to use for detection"},
        {
            "type": "object",
            "properties": {
                "image": {
                    "type": "array",
                    "description": "An array of integers that represent the image data constrained to 8-bit "
                    "unsigned integer values",
                    "items": {"type": "number", "description": "A value between 0 and 255 (unsigned 8bit)"},
                }
            },
        },
    ]
}

_BOX_COORD = {
    "xmin": "The x-coordinate of the top-left corner of the bounding box",
    "ymin": "The y-coordinate of the top-left corner of the bounding box",
    "xmax": "The x-coordinate of the bottom-right corner of the bounding box",
    "ymax": "The y-coordinate of the bottom-right corner of the bounding box",
}

# ../shared/seeds/001, "API schema / Output"
CLASSIFICATION_OUTPUT = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"score": {"type": "number"}, "label": {"type": "string"}},
    },
}

# ../shared/seeds/002, "API Schemas", the second (output) schema
DETECTION_OUTPUT = {
    "type": "array",
    "contentType": "application/json",
    "description": "An array of detected objects within the input image",
    "items": {
        "type": "object",
        "properties": {
            "score": {
                "type": "number",
                "description": "Confidence score indicating the likelihood that the detection is correct",
            },
            "label": {"type": "string", "description": "The class label or name of the detected object"},
            "box": {
                "type": "object",
                "description": "Coordinates defining the bounding box around the detected object",
                "properties": {k: {"type": "number", "description": _BOX_COORD[k]} for k in BOX_KEYS},
            },
        },
    },
}


# --- a small JSON-schema validator (the keywords the seeds use) ---------------------------------

_JSON_TYPES = {dict: "object", list: "array", tuple: "array", str: "string", bool: "boolean", type(None): "null"}


def json_type(v):
    """The JSON type name of a Python value ("number" for int/float, not bool)."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "binary"
    return _JSON_TYPES.get(type(v), type(v).__name__)


def _has_type(v, t, schema):
    kind = json_type(v)
    if t == "number":
        return kind == "number"
    if t == "integer":
        return kind == "number" and (_is_int(v) or (math.isfinite(v) and float(v).is_integer()))
    if t == "string":  # Python bytes are the "binary string" the input schema allows
        return kind == "string" or (kind == "binary" and schema.get("format") == "binary")
    return kind == t


def _is_int(v):
    """Python and numpy integers: exact, and finite at any size (JSON integers can exceed float64)."""
    return isinstance(v, (int, np.integer))


def validate(instance, schema, path="$"):
    """Validate `instance` against a JSON schema; return a list of messages ("$[0].score: ...").

    Supports what the seeds' schemas use -- type (number, integer, string with format binary
    accepting bytes, object, array, boolean, null), properties, items, oneOf -- plus required,
    additionalProperties: false, minimum, maximum and enum. Numbers must be finite (JSON has no
    NaN or Infinity). Description keywords are ignored.
    """
    if "oneOf" in schema:
        passing = [i for i, s in enumerate(schema["oneOf"]) if not validate(instance, s, path)]
        if len(passing) != 1:
            return [f"{path}: matches {len(passing)} of the {len(schema['oneOf'])} oneOf alternatives, expected 1"]
        return []
    errors = []
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_has_type(instance, x, schema) for x in types):
            return [f"{path}: expected {' or '.join(types)}, got {json_type(instance)}"]
    if json_type(instance) == "number":
        if not _is_int(instance) and not math.isfinite(instance):
            return [f"{path}: {float(instance)} is not a JSON number (NaN and infinities are not allowed)"]
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{path}: {instance} is below the minimum {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            errors.append(f"{path}: {instance} is above the maximum {schema['maximum']}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if isinstance(instance, dict):
        for name in schema.get("required", []):
            if name not in instance:
                errors.append(f"{path}: missing required property {name!r}")
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name in instance:
                errors += validate(instance[name], sub, f"{path}.{name}")
        if schema.get("additionalProperties") is False:
            for name in instance:
                if name not in props:
                    errors.append(f"{path}: unexpected property {name!r}")
    if isinstance(instance, (list, tuple)) and "items" in schema:
        for i, item in enumerate(instance):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors


ENVELOPE_SCHEMA = {
    "type": "object",
    "required": ["result", "success", "errors", "messages"],
    "properties": {
        "success": {"type": "boolean"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
            },
        },
        "messages": {"type": "array"},
    },
}


def unwrap(claimed):
    """A claimed response -> (result or None, problems, notes). Accepts a bare result list, the
    REST envelope, or the seeds' Worker example {"inputs": ..., "response": [...]}."""
    if isinstance(claimed, (list, tuple)):
        return list(claimed), [], []
    if not isinstance(claimed, dict):
        return None, [f"response is {json_type(claimed)}, expected a result array or the REST envelope"], []
    if "response" in claimed and "result" not in claimed:
        return claimed["response"], [], ["response is the seeds' Worker example shape {inputs, response}"]
    if "result" not in claimed and "success" not in claimed:
        return None, ["response is an object that is neither a result array nor the REST envelope"], []
    problems = [f"envelope: {e}" for e in validate(claimed, ENVELOPE_SCHEMA)]
    if claimed.get("success") is not True or claimed.get("errors"):
        errs = claimed.get("errors") or []
        errs = errs if isinstance(errs, (list, tuple)) else [errs]  # the envelope problem above names it
        text = "; ".join(f"[{e.get('code')}] {e.get('message')}" if isinstance(e, dict) else str(e) for e in errs)
        problems.append(f"the endpoint reported failure (success={claimed.get('success')!r}): {text or 'no errors given'}")
        return None, problems, []
    return claimed.get("result"), problems, []




def envelope(result=None, error=None):
    """The hosted API's response envelope; `error` is a RefimplError (or None for success)."""
    if error is None:
        return {"result": result, "success": True, "errors": [], "messages": []}
    return {"result": None, "success": False, "errors": [{"code": int(error.code), "message": str(error)}],
            "messages": []}
