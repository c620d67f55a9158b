"""Why two implementations differ: the catalogue of porting-bug diagnoses.

One diagnosis, one small function, registered here (as onnx.reference registers its ops): the
tensor kit (compare, certify, isolate) and the answer-audit kit (the judge) ask the catalogue,
never an if-chain of their own.

    >>> from refimpl import diagnoses
    >>> diagnoses.CATALOGUE["missing activation"].look_at
    'the activation after this op ...'

An entry (`Diagnosis`) has:
    kind       its name, the word a report shows ("missing activation", "bn eps", ...)
    applies_to what it explains: "tensor" (A vs the reference B at one named tensor), "pixel_values"
               (the input, with the image and the preprocessor), "layer" (isolate: a layer re-run
               in a variant), "claim" (a claimed answer's signature, judged by refimpl.audit.judge)
    order      where it is tried among the entries of its `applies_to` (lower first)
    check      the function. "tensor" and "pixel_values": `check(case) -> dict | None` (case: a
               case.TensorCase), the dict holding at least "kind" and "message"; None when the
               diagnosis does not explain the difference. "layer": `check(params, layer, inputs)
               -> the layer's output` with the porting bug (detr_layer.py). "claim": a pure
               function of the claimed and reference arrays -> None or {"detail", the undone
               arrays} (claim_*.py). "structure": `check(case) -> dict | None` (case: a dict or an
               object with name, a, b, budget, precision, ...): a structural check run on every
               compared tensor BEFORE the size check in reduced precision, so a bug inside the
               rounding noise is named (refimpl.conformance.precision); never walked by diagnose()
    confidence "certain" (the named transformation reproduces A within the tolerance), "likely"
               (a pattern points at it) or "unknown"
    look_at    what a person should look at in their code (a "tensor" check's dict may set its
               own "confidence" and "look_at"; else the entry's are used)
    doc        what it recognises: the check's docstring's first sentence
    scope      optional: the kinds of thing within `applies_to` it is tried on (a "layer" entry:
               ("encoder", "decoder"); a "claim" entry: ("detection",) or ("classification",));
               empty: all of them

Modules register themselves on import; `load_all()` imports every module of this package.
`refimpl diagnoses` lists the catalogue; docs/diagnoses.md is its generated listing.

    >>> @register("log probabilities", order=75, look_at="a log_softmax where the reference has a softmax")
    ... def log_probabilities(case):
    ...     '''exp(A) == B: A holds log-probabilities where B holds probabilities.'''
    ...     if case.same_shape and case.b.min(initial=0.0) >= 0 and case.close(np.exp(case.a), case.b):
    ...         return {"kind": "log probabilities", "message": "log probabilities: exp(A) == B"}
    ...     return None
"""

from dataclasses import dataclass
from typing import Callable

APPLIES_TO = ("tensor", "pixel_values", "layer", "claim", "structure")
CONFIDENCES = ("certain", "likely", "unknown")


@dataclass(frozen=True)
class Diagnosis:
    kind: str
    applies_to: str
    order: int
    check: Callable
    confidence: str
    look_at: str
    doc: str  # what the diagnosis recognises: its docstring's first sentence
    scope: tuple = ()


CATALOGUE = {}  # kind -> Diagnosis


def register(kind, applies_to="tensor", order=100, confidence="certain", look_at="", scope=()):
    """Decorator: add `check` to the catalogue under `kind`. A kind is registered once."""
    if applies_to not in APPLIES_TO:
        raise ValueError(f"applies_to must be one of {APPLIES_TO}, got {applies_to!r}")
    if confidence not in CONFIDENCES:
        raise ValueError(f"confidence must be one of {CONFIDENCES}, got {confidence!r}")

    def add(check):
        if kind in CATALOGUE and CATALOGUE[kind].check is not check:
            raise ValueError(f"diagnosis {kind!r} is registered twice")
        doc = (check.__doc__ or "").strip().splitlines()
        CATALOGUE[kind] = Diagnosis(kind, applies_to, order, check, confidence, look_at,
                                    " ".join(_first_sentence(doc)), tuple(scope))
        return check

    return add


def _first_sentence(lines):
    """The docstring's first paragraph, up to its first full stop: what the diagnosis recognises."""
    out = []
    for line in lines:
        if not line.strip():
            break
        out.append(line.strip())
        if line.rstrip().endswith("."):
            break
    return out


def entries(applies_to, scope=None):
    """The catalogue's entries for `applies_to` (and, given `scope`, those tried on it), in the
    order they are tried."""
    if applies_to not in APPLIES_TO:
        raise ValueError(f"applies_to must be one of {APPLIES_TO}, got {applies_to!r}")
    load_all()
    return sorted((d for d in CATALOGUE.values() if d.applies_to == applies_to
                   and (scope is None or not d.scope or scope in d.scope)), key=lambda d: (d.order, d.kind))


_loaded = []  # [True] once load_all() has imported every module


def load_all():
    """Import every diagnosis module of this package (each registers its entries), once."""
    import importlib
    import pkgutil

    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    _loaded.append(True)
