"""refimpl audit-dir: the folder runner (JSONL results, resume after Ctrl-C or kill, summary) and
the safety of its results file: it writes only to a file that is new, empty or recognisably its
own results for this model, refuses anything else without touching it, names a corrupt line, and
resumes from a complete read-only file."""

import io
import json
import os
import stat
import sys

import pytest

from refimpl.cli import main
from refimpl.audit import folder as audit_module
from refimpl.audit.folder import audit_dir
from refimpl.audit.results import read_records
from refimpl.errors import ResultsFileError
from refimpl.serving import contract
from fixtures_audit import envelope, photo, write  # the `weights` fixture comes through conftest

RESNET = "@cf/microsoft/resnet-50"
DETR = "@cf/facebook/detr-resnet-50"



def swap_first_two(answer):
    out = [dict(x) for x in answer]
    out[0]["label"], out[1]["label"] = out[1]["label"], out[0]["label"]
    return out


# --- audit-dir --------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path, weights):
    """5 images: 2 agreeing claims (one as an envelope), 1 disagreeing, 1 malformed, 1 without a claim;
    plus a claim without an image."""
    d = tmp_path / "photos"
    d.mkdir()
    for i, name in enumerate(["a", "b", "c", "d", "e"]):
        data = photo(10 + i)
        (d / f"{name}.png").write_bytes(data)
        answer = contract.run(RESNET, data, weights=weights)
        claims = {"a": answer, "b": envelope(answer), "c": swap_first_two(answer), "d": "{not json"}
        if name in claims:
            write(d, claims[name], f"{name}.json")
    write(d, [], "orphan.json")
    return d


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


class Terminal(io.StringIO):
    """A stream that says it is a terminal: where audit-dir draws its progress bar."""

    def isatty(self):
        return True


@pytest.mark.slow
def test_audit_dir_resumes_without_duplicates(folder, weights, monkeypatch, capsys):
    out = folder / "audit.jsonl"
    args = ["audit-dir", str(folder), "--weights", weights]
    # 1. a partial run, on a terminal (the progress bar shows only there)
    terminal = Terminal()
    with monkeypatch.context() as m:
        m.setattr(sys, "stderr", terminal)
        assert main(args + ["--limit", "2"]) == 0
    assert [r["image"] for r in lines(out)] == ["a.png", "b.png"]
    text = capsys.readouterr()
    assert "2 of 5 image(s) recorded" in text.out and "3 image(s) not audited yet" in text.out
    bar = terminal.getvalue()
    assert "[" in bar and "2/2" in bar and "b.png: agree" in bar  # the progress bar

    # 2. interrupted (Ctrl-C) during the second image of the next run
    real = audit_module._audit_one
    calls = []

    def interrupt_second(*a, **k):
        calls.append(a[0].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(audit_module, "_audit_one", interrupt_second)
    assert main(args) == 130
    monkeypatch.setattr(audit_module, "_audit_one", real)
    assert [r["image"] for r in lines(out)] == ["a.png", "b.png", "c.png"]
    # 3. and a crash in the middle of writing a line
    with open(out, "a") as f:
        f.write('{"image": "d.png", "status": "agr')
    capsys.readouterr()

    # 4. the rerun finishes the rest, once each
    assert main(args) == 1  # c disagrees, d is malformed
    records = lines(out)
    assert [r["image"] for r in records] == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    assert [r["status"] for r in records] == ["agree", "agree", "disagree", "malformed", "no-claim"]
    assert records[4]["reference"] == contract.run(RESNET, (folder / "e.png").read_bytes(), weights=weights)
    assert records[0]["claimed"] == "a.json" and records[4]["claimed"] is None
    summary = capsys.readouterr().out
    assert "5 of 5 image(s) recorded" in summary and "(2 audited in this run, 0 remaining)" in summary
    assert "DISAGREE     c.png" in summary and "MALFORMED    d.png" in summary  # the one vocabulary
    assert "claims without an image (ignored): orphan.json" in summary
    assert "verdict: 2 image(s) do not agree" in summary

    # 5. nothing left: a rerun changes nothing; --json summary
    before = out.read_bytes()
    assert main(args + ["--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert out.read_bytes() == before
    assert summary["by_status"] == {"agree": 2, "disagree": 1, "malformed": 1, "no-claim": 1}
    assert summary["audited_now"] == 0 and summary["remaining"] == 0 and not summary["ok"]


def test_audit_dir_restart_and_other_model_and_read_records(folder, weights, tmp_path):
    out = tmp_path / "results.jsonl"
    first = audit_dir(folder, RESNET, out, progress=False, weights=weights)
    assert first["recorded"] == 5 and first["audited_now"] == 5
    again = audit_dir(folder, RESNET, out, restart=True, progress=False, weights=weights)
    assert again["audited_now"] == 5 and len(lines(out)) == 5
    with pytest.raises(ResultsFileError, match="holds results for @cf/microsoft/resnet-50"):
        audit_dir(folder, DETR, out, progress=False)
    out.write_text(out.read_text() + '{"image": "x.png"')  # a torn last line is dropped from the file
    assert len(read_records(out)) == 5 and out.read_text().endswith("}\n")


def test_audit_dir_all_agree(tmp_path, weights, capsys):
    d = tmp_path / "good"
    d.mkdir()
    for i in range(2):
        (d / f"p{i}.png").write_bytes(photo(20 + i))
        write(d, contract.run(RESNET, (d / f"p{i}.png").read_bytes(), weights=weights), f"p{i}.json")
    assert main(["audit-dir", str(d), "--weights", weights, "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "verdict: every recorded claim agrees with the reference" in captured.out


# --- the results file: only ever our own ---------------------------------------------------------


NOT_OURS = {
    "a text file": "meeting notes\nbuy milk\n",
    "JSON lines of something else": '{"id": 1, "name": "x"}\n{"id": 2, "name": "y"}\n',
    "a JSON document": '{\n  "results": []\n}\n',
    "one line without a newline": "hello",
    "binary": "\x00\x01\x02garbage",
}


@pytest.mark.parametrize("what", list(NOT_OURS))
def test_refuses_a_file_that_is_not_its_own_and_leaves_it_untouched(folder, weights, tmp_path, capsys, what):
    out = tmp_path / "notes.jsonl"
    out.write_text(NOT_OURS[what])
    before = out.read_bytes(), out.stat().st_mtime_ns
    with pytest.raises(ResultsFileError, match=r"notes.jsonl line 1 is not an audit-dir record"):
        audit_dir(folder, RESNET, out, progress=False, weights=weights)
    for restart in (False, True):  # --restart does not make it ours either
        args = ["audit-dir", str(folder), "--weights", weights, "--out", str(out), "--no-progress"]
        assert main(args + (["--restart"] if restart else [])) == 2
        assert "ResultsFileError" in capsys.readouterr().err
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before


def test_a_corrupt_line_is_a_typed_error_naming_it(folder, weights, tmp_path):
    out = tmp_path / "results.jsonl"
    audit_dir(folder, RESNET, out, limit=3, progress=False, weights=weights)
    good = out.read_text().splitlines(keepends=True)
    out.write_text(good[0] + '{"image": "b.png", "status": "agr\n' + good[2])  # line 2 broken, not the last
    before = out.read_bytes()
    with pytest.raises(ResultsFileError, match=r"results.jsonl line 2 is not an audit-dir record"):
        audit_dir(folder, RESNET, out, progress=False, weights=weights)
    assert out.read_bytes() == before
    out.write_text(good[0] + "\n" + good[1])  # an empty line is corrupt too
    with pytest.raises(ResultsFileError, match="line 2"):
        read_records(out)


def test_other_models_results_are_refused_untouched(folder, weights, tmp_path):
    out = tmp_path / "results.jsonl"
    audit_dir(folder, RESNET, out, limit=1, progress=False, weights=weights)
    before = out.read_bytes()
    with pytest.raises(ResultsFileError, match=r"holds results for @cf/microsoft/resnet-50 \(line 1\), not @cf/facebook"):
        audit_dir(folder, DETR, out, progress=False)
    assert out.read_bytes() == before


def test_new_and_empty_files_are_fine_and_a_complete_read_only_file_resumes(folder, weights, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert audit_dir(folder, RESNET, empty, limit=1, progress=False, weights=weights)["recorded"] == 1
    new = tmp_path / "sub" / "new.jsonl"
    new.parent.mkdir()
    full = audit_dir(folder, RESNET, new, progress=False, weights=weights)
    assert full["recorded"] == 5 and full["remaining"] == 0
    before = new.read_bytes()
    os.chmod(new, stat.S_IRUSR | stat.S_IRGRP)  # complete and read-only: nothing to write, so fine
    try:
        if os.access(new, os.W_OK):
            pytest.skip("running as a user who can write read-only files (root)")
        again = audit_dir(folder, RESNET, new, progress=False, weights=weights)
    finally:
        os.chmod(new, stat.S_IRUSR | stat.S_IWUSR)
    assert again["recorded"] == 5 and again["audited_now"] == 0 and new.read_bytes() == before


def test_a_complete_file_is_only_read(folder, weights, tmp_path, monkeypatch):
    """Resuming a finished run opens nothing for writing (the property that makes a read-only
    file fine, checked even where the tests run as root)."""
    out = tmp_path / "done.jsonl"
    audit_dir(folder, RESNET, out, progress=False, weights=weights)
    real_open, modes = open, []

    def spy(file, mode="r", *a, **k):
        if str(file) == str(out):
            modes.append(mode)
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr("builtins.open", spy)
    assert audit_dir(folder, RESNET, out, progress=False, weights=weights)["audited_now"] == 0
    assert not [m for m in modes if set(m) & set("wa+")], modes


def test_a_torn_last_line_after_a_kill_is_redone_once(folder, weights, tmp_path):
    out = tmp_path / "results.jsonl"
    audit_dir(folder, RESNET, out, limit=2, progress=False, weights=weights)
    complete = out.read_bytes()
    third = audit_module._audit_one(folder / "c.png", RESNET, None, (), {"weights": weights, "revision": None,
                                                                          "dtype": "float32", "path": "fast"})
    line = json.dumps(third, sort_keys=True).encode()
    out.write_bytes(complete + line[: len(line) // 2])  # killed while writing c.png's line
    summary = audit_dir(folder, RESNET, out, progress=False, weights=weights)
    images = [r["image"] for r in map(json.loads, out.read_text().splitlines())]
    assert images == ["a.png", "b.png", "c.png", "d.png", "e.png"] and summary["audited_now"] == 3


# --- dataset statistics ------------------------------------------------------------------------------


def test_summary_statistics(folder, weights, tmp_path):
    """a and b agree, c swaps the first two labels (same set, scores follow their labels), d is
    malformed, e has no claim: the statistics count what the verdicts' rows say."""
    summary = audit_dir(folder, RESNET, tmp_path / "r.jsonl", progress=False, weights=weights)
    st = summary["statistics"]
    judged = [r for r in lines(tmp_path / "r.jsonl") if r.get("verdict")]
    assert st["judged"] == len(judged) and {r["image"] for r in judged} >= {"a.png", "b.png", "c.png"}
    ref_c = contract.run(RESNET, (folder / "c.png").read_bytes(), weights=weights)
    n = st["judged"]
    assert st["top1_agreement"] == pytest.approx((n - 1) / n)  # only c's rank 1 differs
    assert st["top5_set_agreement"] == 1.0  # a swap keeps the set
    assert st["confusion"] == [{"reference": ref_c[0]["label"], "claimed": ref_c[1]["label"], "images": 1}]
    assert st["score_diff"]["max"] == pytest.approx(ref_c[0]["score"] - ref_c[1]["score"], abs=1e-6)
    assert st["score_diff"]["min"] == 0.0
    assert "top-1 agreement" in audit_module.format_summary(summary)



def test_audit_dir_report_is_a_self_contained_page(folder, weights, tmp_path, capsys):
    """--report writes the summary as one HTML file (refimpl.reports.html), in the same
    words as the text summary."""
    from refimpl.cli import main

    out = tmp_path / "r.html"
    assert main(["audit-dir", str(folder), "--weights", weights, "--report", str(out), "--out",
                 str(tmp_path / "r.jsonl")]) == 1  # one claim disagrees, one is malformed
    html = out.read_text()
    assert "<html" in html.lower() and "https://" not in html and "http://" not in html
    assert "DISAGREE" in html and "MALFORMED" in html and "c.png" in html
    assert f"report: {out}" in capsys.readouterr().err


def test_exit_code_3_when_the_only_failures_are_incomplete(tmp_path):
    """audit-dir's exit code: 3 when every claim that fails is INCOMPLETE (too little judged), 1 as
    soon as one disagrees; the summary counts the claimed rows judged."""
    from refimpl.audit.folder import format_summary, summarize

    def rec(name, status, code, judged, claimed):
        return {"image": name, "status": status, "exit_code": code, "problems": [], "wrong_image": None,
                "coverage": {"claimed": claimed, "claimed_judged": judged, "text": f"{judged} of {claimed} judged"}}

    images = [tmp_path / n for n in ("a.jpg", "b.jpg", "c.jpg")]
    records = [rec("a.jpg", "agree", 0, 100, 100), rec("b.jpg", "incomplete", 3, 99, 100)]
    s = summarize(records, images[:2], tmp_path, tmp_path / "out.jsonl", 2)
    assert s["exit_code"] == 3 and not s["ok"] and s["coverage"] == {"claims": 2, "claimed": 200, "claimed_judged": 199,
                                                                     "incomplete": 1}
    assert s["not_agreeing"][0]["first_problem"] == "only 99 of 100 judged"
    assert "coverage: 199 of 200 claimed row(s) judged over 2 claim(s); 1 claim(s) INCOMPLETE" in format_summary(s)
    s = summarize(records + [rec("c.jpg", "disagree", 1, 5, 5)], images, tmp_path, tmp_path / "out.jsonl", 3)
    assert s["exit_code"] == 1
    assert summarize(records[:1], images[:1], tmp_path, tmp_path / "out.jsonl", 1)["exit_code"] == 0
