"""The verdict and its vocabulary: tolerances, the named signatures, and the Verdict itself."""

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from refimpl import diagnoses
from refimpl.serving.schemas import json_type


@dataclass(frozen=True)
class Tolerances:
    """How far a claimed answer may be from the reference and still agree.

    The defaults accept another correct float32 implementation that decodes and resizes images
    the same way (those differ from refimpl by about 1e-5 in score and far below a pixel), with
    room for a different BLAS or float64; a different image decoder or resize implementation can
    need looser values.
    """

    score_atol: float = 0.01  # max |claimed - reference| score, per matched item
    iou_min: float = 0.9  # min IoU of a matched detection above the threshold
    corner_px: float = 2.0  # max |claimed - reference| of any box corner, pixels (+1 when rounded)
    match_iou: float = 0.5  # min IoU for two same-label detections to be paired
    threshold: float = 0.5  # the reference's detection threshold (transformers' default)
    rank_corr_min: float = 0.9  # min Spearman correlation to call a score change monotonic
    no_threshold_extra: int = 10  # this many more detections than ours above threshold = no threshold

    def __post_init__(self):
        for name in ("score_atol", "corner_px", "no_threshold_extra"):
            if getattr(self, name) < 0:
                raise ValueError(f"tolerance {name} must be >= 0, got {getattr(self, name)}")
        for name in ("iou_min", "match_iou", "threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"tolerance {name} must be in [0, 1], got {getattr(self, name)}")
        if not -1 <= self.rank_corr_min <= 1:
            raise ValueError(f"tolerance rank_corr_min must be in [-1, 1], got {self.rank_corr_min}")


# The named signatures: the diagnosis catalogue's "claim" entries (refimpl/diagnoses/claim_*.py),
# name -> what it recognises.
SIGNATURES = {entry.kind: entry.doc for entry in diagnoses.entries("claim")}

# Presets for check-endpoint's --accept.
ACCEPT_PRESETS = {
    "hosted": ("no_threshold", "integer_rounding", "uint16_wraparound"),
    "all": tuple(SIGNATURES),
}


@dataclass
class Verdict:
    """The judgement of one claimed answer.

    rows: one dict per compared item. Classification rows: rank, reference_label,
      reference_score, claimed_label, claimed_score, score_diff, ok. Detection rows: status
      ("match": a claimed detection paired with a reference query and compared; "missing",
      "extra"; "low": an unpaired low-score claim, not judged), reference_index, claimed_index,
      label, reference_label, reference_score, claimed_score, score_diff, iou, corner_px, ok,
      judged.
    signatures: names from SIGNATURES recognised in the claim; `details` explains each.
    problems: what disagrees beyond the tolerances (empty unless status is "disagree").
    notes: observations that are not problems (near ties, ordering, excused items).
    stats: counts and extremes (n_claimed, n_reference, matched, missing, extra, max_score_diff,
      min_iou, max_corner_px, spearman, labels_agree, boxes_agree, ...).
    coverage: what was judged (`coverage.py`): {"claimed", "claimed_judged", "reference",
      "reference_judged", "judged", "items", "not_judged": [why], "text"}.
    """

    model: str
    task: str
    status: str
    agree: bool
    rows: list = field(default_factory=list)
    signatures: list = field(default_factory=list)
    details: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    schema_errors: list = field(default_factory=list)
    tolerances: Tolerances = field(default_factory=Tolerances)
    wrong_image: str | None = None  # why the claim looks like another image's answer (with "disagree")
    score_formula: dict | None = None  # judge.formulas.explain_scores(): the formula behind changed scores
    coverage: dict = field(default_factory=dict)  # what was judged of the claim and the reference (coverage.py)

    @property
    def word(self):
        """The verdict in the shared vocabulary: AGREE, EXPLAINED, DISAGREE, WRONG IMAGE?, INCOMPLETE,
        MALFORMED."""
        from .vocabulary import word

        return word(self.status, self.wrong_image)

    def accepted(self, accept=()):
        """True if the claim agrees, or is explained entirely by signatures listed in `accept`
        (names, or the presets "hosted" and "all"). Never for INCOMPLETE or WRONG IMAGE?."""
        if self.wrong_image:
            return False
        if self.status == "agree":
            return True
        allowed = set()
        for name in accept:
            allowed.update(ACCEPT_PRESETS.get(name, (name,)))
        return self.status == "explained" and set(self.signatures) <= allowed

    def to_dict(self):
        return dict(asdict(self), word=self.word)

    def to_json(self, indent=None):
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, default=json_default)


def json_default(o):
    """json.dumps' fallback: rows and stats hold numpy scalars."""
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def name_signature(v, name, detail):
    """Record that signature `name` was recognised (once), with what was seen and undone."""
    if name not in v.signatures:
        v.signatures.append(name)
    v.details[name] = detail


def finite_number(x):
    """A JSON number that is neither NaN nor infinite (nor an integer too large for a float): what
    every score and corner must be."""
    if json_type(x) != "number":
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:  # e.g. 10**400: valid JSON, but no score or pixel
        return False
