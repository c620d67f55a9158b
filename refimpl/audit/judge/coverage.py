"""Coverage: how much of a claim was judged, and the rule that turns too little into INCOMPLETE.

An oracle must never pass what it did not judge. Every verdict therefore counts:

* the claim's rows: a row is *judged* when it was compared with a reference counterpart
  (classification: the label at its rank; detection: the reference query it was paired with, its
  box, label and score compared), or found to lack one where the reference would have one (an
  *extra* detection above the threshold: a problem). A low-score detection with no partner in the
  reference is *not judged*: nothing says whether it is right.
* the reference's confident detections (above the threshold): each is judged, paired with a claimed
  row or reported *missing*.

The rule (`settle`), in order:

    DISAGREE      any problem (what was judged contradicts the reference); WRONG IMAGE? when the
                  claim looks like another image's (box extent: whatever the threshold or scores)
    INCOMPLETE    no problem, but fewer claimed rows judged than claimed ("judged < claimed"):
                  a claim without a threshold (every query) must have every row judged, a
                  thresholded claim every row too; one unjudged row is enough
    EXPLAINED     every row judged, differences all named signatures
    AGREE         every row judged, nothing to explain

Zero rows judged of one or more is always INCOMPLETE (by the rule above). An empty claim against a
reference with nothing above the threshold is the one case with nothing to count: both answers
are "nothing detected", compared as wholes, and the coverage says so.
"""


def detection_coverage(v, n_claimed, claimed_judged, n_reference, reference_judged, not_judged):
    """Record the coverage of a detection verdict. n_reference: the reference's detections above
    the threshold; not_judged: reasons (one line each) for what was not judged."""
    cov = {"claimed": n_claimed, "claimed_judged": claimed_judged, "reference": n_reference,
           "reference_judged": reference_judged, "items": n_claimed + n_reference,
           "judged": claimed_judged + reference_judged, "not_judged": list(not_judged)}
    if n_claimed + n_reference == 0:
        cov["text"] = "nothing claimed and nothing above the threshold in the reference: both answers are empty"
    else:
        cov["text"] = (f"{claimed_judged} of {n_claimed} claimed detection(s) judged; {reference_judged} of "
                       f"{n_reference} reference detection(s) above {v.tolerances.threshold} judged")
    v.coverage = cov


def classification_coverage(v, n_claimed, claimed_judged, n_reference, not_judged):
    """Record the coverage of a classification verdict (labels compared rank by rank)."""
    v.coverage = {"claimed": n_claimed, "claimed_judged": claimed_judged, "reference": n_reference,
                  "reference_judged": min(n_reference, claimed_judged), "items": n_claimed,
                  "judged": claimed_judged, "not_judged": list(not_judged),
                  "text": f"{claimed_judged} of {n_claimed} claimed label(s) judged"}


def refusal_coverage(v):
    """The coverage of a claimed error for an image refimpl refuses too: the refusal is what was
    compared (no rows on either side)."""
    v.coverage = {"claimed": 0, "claimed_judged": 0, "reference": 0, "reference_judged": 0, "items": 0,
                  "judged": 0, "not_judged": [],
                  "text": "the claim is an error and refimpl refuses the image too: the refusals were compared"}


def too_little(coverage):
    """Why too little was judged to agree (a sentence), or None."""
    if not coverage:
        return "nothing was compared"
    claimed, judged = coverage["claimed"], coverage["claimed_judged"]
    if judged < claimed:
        why = "; ".join(coverage["not_judged"][:3])
        return f"only {judged} of {claimed} claimed row(s) judged" + (f" ({why})" if why else "")
    return None


def settle(v):
    """Set `v.status` and `v.agree` from its problems, wrong_image, coverage and signatures (the
    rule in the module docstring)."""
    if v.problems or v.wrong_image:
        v.status = "disagree"
    elif too_little(v.coverage):
        v.status = "incomplete"
    else:
        v.status = "explained" if v.signatures else "agree"
    v.agree = v.status == "agree"
    return v
