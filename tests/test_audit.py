"""refimpl.audit, `refimpl audit` and `refimpl audit-dir`: agreeing, disagreeing and malformed
claimed responses each get the right verdict and exit code; audit-dir resumes without duplicates."""

import json

import pytest

from hf_trace import small_checkpoint
from refimpl.serving import contract
from refimpl.audit.image import audit
from refimpl.cli import main
from refimpl.pipeline import postprocess
from fixtures_audit import envelope, photo, write  # the `weights` fixture comes through conftest

RESNET = "@cf/microsoft/resnet-50"
DETR = "@cf/facebook/detr-resnet-50"



@pytest.fixture(scope="module")
def case(tmp_path_factory, weights):
    """An image, and refimpl's own answer for it (what an agreeing endpoint returns)."""
    folder = tmp_path_factory.mktemp("audit")
    image = folder / "photo.png"
    image.write_bytes(photo(1))
    answer = contract.run(RESNET, image.read_bytes(), weights=weights)
    return image, answer


def cli(image, claimed, weights, *extra, model="resnet-50"):
    return main(["audit", str(image), "--claimed", str(claimed), "--model", model, "--weights", weights, *extra])


# --- agree / disagree / malformed ------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["bare list", "REST envelope", "worker example"])
def test_agreeing_claims(case, weights, tmp_path, capsys, shape):
    image, answer = case
    claim = {"bare list": answer, "REST envelope": envelope(answer),
             "worker example": {"inputs": {"image": []}, "response": answer}}[shape]
    result = audit(image, claim, "resnet-50", weights=weights)
    assert (result.status, result.exit_code) == ("agree", 0)
    assert result.reference == answer and result.input_sha256
    assert cli(image, write(tmp_path, claim), weights) == 0
    assert "verdict: AGREE" in capsys.readouterr().out


def swap_first_two(answer):
    out = [dict(x) for x in answer]
    out[0]["label"], out[1]["label"] = out[1]["label"], out[0]["label"]
    return out


DISAGREEING = {
    "labels swapped": (swap_first_two, "rank 1: label"),
    "a different label": (lambda a: [dict(a[0], label="TOASTER")] + a[1:], "rank 1: label 'TOASTER'"),
    "scores off": (lambda a: [dict(x, score=x["score"] + (0.2 if i % 2 else -0.2)) for i, x in enumerate(a)],
                   "scores differ by up to"),
    "a label repeated": (lambda a: [a[0], a[0]] + a[2:], "rank 2: label"),
    "an error envelope": (lambda a: {"result": None, "success": False, "errors": [{"code": 5004, "message": "no"}],
                                     "messages": []}, "the endpoint reported failure"),
}


@pytest.mark.parametrize("name", list(DISAGREEING))
def test_disagreeing_claims(case, weights, tmp_path, capsys, name):
    image, answer = case
    change, fragment = DISAGREEING[name]
    claim = change(answer)
    result = audit(image, claim, RESNET, weights=weights)
    assert (result.status, result.exit_code) == ("disagree", 1)
    assert any(fragment in p for p in result.to_dict()["problems"]), result.to_dict()["problems"]
    assert cli(image, write(tmp_path, claim), weights, "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "disagree" and report["exit_code"] == 1 and report["reference"] == answer


MALFORMED = {
    "not JSON": ('{"result": [{"label": "TABBY", "score": 0.9}', "not JSON"),
    "empty file": ("", "not JSON"),
    "a number": ("42", "expected a result array or the REST envelope"),
    "an unrelated object": ({"label": "TABBY"}, "neither a result array nor the REST envelope"),
    "a label that is a number": ([{"label": 3, "score": 0.5}], "schema: $[0].label: expected string"),
    "a score that is a string": ([{"label": "TABBY", "score": "high"}], "schema: $[0].score: expected number"),
    "an envelope without success": ({"result": []}, "envelope: $: missing required property 'success'"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_claims(case, weights, tmp_path, capsys, name):
    image, _ = case
    claim, fragment = MALFORMED[name]
    path = write(tmp_path, claim)
    result = audit(image, path, "resnet-50", weights=weights)
    assert (result.status, result.exit_code) == ("malformed", 3)
    assert any(fragment in p for p in result.problems), result.problems
    assert result.reference is not None and len(result.reference) == 5  # what the answer should be
    assert cli(image, path, weights) == 3
    out = capsys.readouterr().out
    assert "verdict: MALFORMED" in out and fragment in out


def test_explained_claims_need_accept(case, weights, tmp_path):
    """Labels in the checkpoint's raw style: the same answer, named as a signature; accepted on request."""
    image, answer = case
    from refimpl.api import load_resnet50

    raw = load_resnet50(weights)(image.read_bytes(), labels="raw")
    path = write(tmp_path, raw)
    result = audit(image, path, "resnet-50", weights=weights)
    assert result.status == "explained" and result.verdict.signatures == ["label_style"]
    assert result.exit_code == 1
    assert audit(image, path, "resnet-50", accept=["label_style"], weights=weights).exit_code == 0
    assert cli(image, path, weights) == 1
    assert cli(image, path, weights, "--accept", "label_style") == 0


def test_tolerances_are_options(case, weights, tmp_path):
    image, answer = case
    nudged = [dict(x, score=x["score"] + 0.005) for x in answer]  # within the default 0.01, same ranking
    path = write(tmp_path, nudged)
    assert cli(image, path, weights) == 0
    assert cli(image, path, weights, "--score-atol", "1e-9") == 1  # explained (score transform), not accepted
    assert cli(image, path, weights, "--score-atol", "1e-9", "--accept", "monotonic_score_transform") == 0
    with pytest.raises(SystemExit):
        main(["audit", str(image), "--claimed", str(path), "--score-atol", "x"])
    assert main(["audit", str(image), "--claimed", str(path), "--weights", weights, "--accept", "nonsense"]) == 2


def test_image_refimpl_refuses(weights, tmp_path):
    image = tmp_path / "broken.png"
    image.write_bytes(photo(2)[:40])  # a truncated PNG
    error = {"result": None, "success": False, "errors": [{"code": 5004, "message": "Invalid data"}], "messages": []}
    both = audit(image, error, "resnet-50", weights=weights)
    assert both.status == "agree" and "the refusals were compared" in both.to_dict()["coverage"]["text"]  # both refuse
    result = audit(image, [{"label": "TABBY", "score": 0.9}], "resnet-50", weights=weights)
    assert result.status == "disagree" and "refimpl refuses this image" in result.verdict.problems[0]


def test_a_classification_claim_for_another_image(weights, tmp_path, capsys):
    """A real claim (refimpl's own answer for the example cat) audited on the example coffee cup:
    the top-5 lists share at most one label and the claimed top label is not in the reference's
    top 5 -> WRONG IMAGE? (rule and measurements: judge/classification.py, README). A claim for
    the same image agrees; a claim for the astronaut audited on the cat shares more labels with
    the reference, and stays a plain DISAGREE."""
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    cat, coffee, astronaut = ((examples / n).read_bytes() for n in ("cat.png", "coffee.jpg", "astronaut.jpg"))
    claim = contract.run(RESNET, cat, weights=weights)
    assert audit(cat, claim, "resnet-50", weights=weights).word == "AGREE"
    result = audit(coffee, claim, "resnet-50", weights=weights)
    assert result.word == "WRONG IMAGE?" and result.status == "disagree", result.to_dict()
    assert "not in the reference's top 5" in result.verdict.wrong_image
    assert result.exit_code == 1
    other = audit(cat, contract.run(RESNET, astronaut, weights=weights), "resnet-50", weights=weights)
    assert other.word == "DISAGREE" and other.verdict.wrong_image is None
    image = tmp_path / "coffee.jpg"
    image.write_bytes(coffee)
    assert cli(image, write(tmp_path, claim), weights) == 1
    assert "WRONG IMAGE?" in capsys.readouterr().out


# --- DETR -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detr_case(tmp_path_factory, detr_timm_dir):
    folder = tmp_path_factory.mktemp("audit-detr")
    weights = str(small_checkpoint(folder / "weights", detr_timm_dir, size={"shortest_edge": 128, "longest_edge": 192}))
    image = folder / "scene.png"
    image.write_bytes(photo(5, 120, 180))
    return image, weights


@pytest.mark.slow
def test_detr_claims(detr_case, tmp_path, capsys):
    image, weights = detr_case
    every = contract.run(DETR, image.read_bytes(), weights=weights, threshold=None)  # all queries
    ours = [d for d in every if d["score"] > 0.5]  # refimpl's own answer (threshold 0.5)
    hosted = postprocess.hosted_shape(every, wrap_uint16=True)  # the hosted API's observed shape
    assert ours, "the synthesized DETR should detect something on this image"
    assert audit(image, ours, DETR, weights=weights).status == "agree"
    result = audit(image, envelope(hosted), "detr-resnet-50", weights=weights)
    assert result.status == "explained" and result.exit_code == 1
    assert {"no_threshold", "integer_rounding"} <= set(result.verdict.signatures)
    assert result.verdict.accepted(["hosted", "uint16_wraparound"])
    assert cli(image, write(tmp_path, hosted), weights, "--accept", "hosted", "--accept", "uint16_wraparound",
               model="detr-resnet-50") == 0
    assert "verdict: EXPLAINED" in capsys.readouterr().out
    shifted = [dict(d, box={k: v + 40 for k, v in d["box"].items()}) for d in ours]
    result = audit(image, shifted, DETR, weights=weights)
    assert result.status == "disagree" and any("IoU" in p or "missing" in p for p in result.verdict.problems)


# --- verdicts people can act on (issue 13) ----------------------------------------------------------


@pytest.mark.slow
def test_hosted_response_for_another_image(detr_case, tmp_path, capsys):
    """The hosted DETR response of FACTS.md audited against an unrelated image: WRONG IMAGE?, the
    hosted signatures named, repeated rows grouped, and under 30 lines."""
    from hosted_detr import hosted_clock_tower_response

    image, weights = detr_case
    claim = envelope(hosted_clock_tower_response())
    result = audit(image, claim, DETR, weights=weights)
    assert result.status == "disagree" and result.word == "WRONG IMAGE?" and result.exit_code == 1
    assert "reach x=1191, y=1816" in result.wrong_image and "on a 180x120 image" in result.wrong_image
    assert {"no_threshold", "integer_rounding", "uint16_wraparound"} <= set(result.verdict.signatures)
    assert not any("lower threshold" in p for p in result.verdict.problems)
    assert result.to_dict()["word"] == "WRONG IMAGE?"
    code = cli(image, write(tmp_path, claim), weights, "--accept", "hosted", model="detr-resnet-50")
    out = capsys.readouterr().out
    assert code == 1  # --accept cannot accept a wrong image
    lines = out.splitlines()
    assert len(lines) < 30, out
    assert lines[-1].startswith("verdict: WRONG IMAGE?: this response is probably for another image")
    assert "signature no_threshold:" in out and "signature uint16_wraparound:" in out


def test_report_option_writes_a_self_contained_page(case, weights, tmp_path, capsys):
    image, answer = case
    out = tmp_path / "audit.html"
    assert cli(image, write(tmp_path, answer), weights, "--report", str(out)) == 0
    html = out.read_text()
    assert "id=verdict" in html and ">AGREE<small>" in html
    assert all(r["label"] in html for r in answer) and "https://" not in html
    assert f"report: {out}" in capsys.readouterr().err


# --- the oracle never passes what it did not judge (issue 21) ---------------------------------------


@pytest.mark.slow
def test_hosted_response_for_another_photo_on_a_square_image(detr_case, tmp_path, capsys):
    """Issue 21: the hosted response for another photo, audited against a 512x512 image on which
    refimpl keeps nothing above the threshold: WRONG IMAGE? from the box extent (it was EXPLAINED
    with 0 of 100 rows judged), exit 1 even with every hosted signature accepted."""
    from hosted_detr import hosted_clock_tower_response

    _, weights = detr_case
    image = tmp_path / "square.png"
    image.write_bytes(photo(11, 512, 512))
    claim = write(tmp_path, envelope(hosted_clock_tower_response()))
    code = cli(image, claim, weights, "--accept", "uint16_wraparound,integer_rounding,no_threshold",
               model="detr-resnet-50")
    out = capsys.readouterr().out
    assert code == 1, out
    assert out.splitlines()[-1].startswith("verdict: WRONG IMAGE?") and "on a 512x512 image" in out
    assert "EXPLAINED" not in out.splitlines()[-1]


@pytest.mark.slow
def test_another_photos_answer_of_the_same_size_is_never_accepted(detr_case, tmp_path, capsys):
    """refimpl's own every-query answer for another photo of the same size, in the hosted shape:
    nothing lies outside the image, so the box extent says nothing; the rows that find no partner
    are not judged, and the verdict is INCOMPLETE (exit 3) or DISAGREE (exit 1), never 0, whatever
    --accept says."""
    image, weights = detr_case
    other = tmp_path / "other.png"
    other.write_bytes(photo(6, 120, 180))
    every = contract.run(DETR, other.read_bytes(), weights=weights, threshold=None)
    claim = write(tmp_path, postprocess.hosted_shape(every, wrap_uint16=True))
    code = cli(image, claim, weights, "--accept", "all", "--json", model="detr-resnet-50")
    result = json.loads(capsys.readouterr().out)
    assert code in (1, 3) and result["word"] in ("INCOMPLETE", "DISAGREE", "WRONG IMAGE?"), result["word"]
    cov = result["coverage"]
    assert cov["claimed"] == 100 and (result["word"] != "INCOMPLETE" or cov["claimed_judged"] < 100)
    assert (code == 3) == (result["word"] == "INCOMPLETE")


@pytest.mark.slow
def test_incomplete_audit_exit_code_and_report(detr_case, tmp_path, capsys):
    """One claimed row moved where no query is: INCOMPLETE, exit 3 with --accept all; the text
    and the HTML report say INCOMPLETE and how much was judged."""
    image, weights = detr_case
    every = contract.run(DETR, image.read_bytes(), weights=weights, threshold=None)
    hosted = postprocess.hosted_shape(every)
    low = next(i for i, d in enumerate(hosted) if d["score"] < 0.1)
    hosted[low] = dict(hosted[low], box={"xmin": 170, "ymin": 2, "xmax": 172, "ymax": 3})
    out_html = tmp_path / "incomplete.html"
    code = cli(image, write(tmp_path, hosted), weights, "--accept", "all", "--report", str(out_html),
               model="detr-resnet-50")
    out = capsys.readouterr().out
    assert code == 3, out
    last = out.splitlines()[-1]
    assert last.startswith("verdict: INCOMPLETE: too little of the claim was judged") and "99 of 100 claimed" in last
    assert "  not judged: 1 low-score claimed row(s) have no partner" in out
    page = out_html.read_text()
    assert ">INCOMPLETE<small>" in page and "99 of 100 claimed" in page


def test_missing_weights_is_a_usage_error_not_a_verdict(case, tmp_path, capsys):
    """No weights is the caller's problem (exit 2), never "refimpl refuses this image" DISAGREE."""
    image, answer = case
    code = cli(image, write(tmp_path, answer), str(tmp_path / "no-such-weights"))
    captured = capsys.readouterr()
    assert code == 2 and "WeightsNotFoundError" in captured.err and "verdict" not in captured.out
