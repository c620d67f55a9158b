"""refimpl certify: real peers certify through each adapter; planted porting bugs are `diverges` at
the right tensor; a black box is certified "on outputs" only; no final outputs -> incomplete.

Every peer here is the real library (torchvision, timm, transformers), loaded with the session's
synthesized ResNet-50 at 64 px through the key maps refimpl ships. The planted bugs go through
`torch:FILE.py:FACTORY` (a file written here, imported by refimpl as a user's file would be) and
`cmd:` (a script run as a subprocess, never imported by the tests)."""

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from refimpl.cli import main
from refimpl.conformance.certify import certify, part_of

CAT = Path(__file__).parent.parent / "examples" / "cat.png"


def check_certified(report, min_compared=76):
    assert report.verdict == "certified", report.text(tensors=True)
    assert report.exit_code == 0
    cov = report.coverage()
    assert cov["scope"] == "layer by layer" and cov["compared"] >= min_compared
    # every compared tensor has a budget and a measured headroom above 1
    rows = report.cases[0]["report"].compared
    assert rows and all(isinstance(r["budget"], float) for r in rows)
    assert report.min_headroom()["headroom"] > 1
    assert "classifier.1" in {r["name"] for r in rows}


@pytest.mark.parametrize("impl", ["torchvision:resnet50", pytest.param("timm:resnet50", marks=pytest.mark.slow),
                                  "transformers"])
def test_real_peers_certify(resnet50_small_dir, impl):
    report = certify(impl, "resnet-50", resnet50_small_dir, images=[CAT])
    # torchvision and timm record 76 tensors under checkpoint names (not the image or
    # pixel_values: they get refimpl's); transformers' module paths are the checkpoint's names
    check_certified(report)
    data = report.to_json()
    assert data["verdict"] == "certified" and data["final_outputs"] == ["classifier.1"]
    assert json.loads(json.dumps(data)) == data  # JSON-able as it is (the --report hook)


def test_torchvision_shared_relu_is_named_by_call(resnet50_small_dir):
    """torchvision's block runs one `relu` module three times: #0, #1, #2 are layer.0, layer.1 and
    the block output - all compared, none guessed."""
    report = certify("torchvision:resnet50", "resnet-50", resnet50_small_dir, images=[CAT])
    names = {r["name"] for r in report.cases[0]["report"].compared}
    for s, blocks in enumerate((3, 4, 6, 3)):
        for b in range(blocks):
            block = f"resnet.encoder.stages.{s}.layers.{b}"
            assert {block, block + ".layer.0", block + ".layer.1", block + ".layer.2"} <= names
        assert f"resnet.encoder.stages.{s}" in names
    assert "layer1.0.conv1" in report.unmapped  # listed, not compared


# --- planted bugs, through torch:FILE.py:FACTORY ---------------------------------------------------

FACTORIES = textwrap.dedent('''
    """A user's port: torchvision's ResNet-50 with one planted bug per factory."""
    import numpy as np
    import torch
    import torchvision
    from safetensors.numpy import load_file

    from refimpl.conformance.adapters import load_map
    from refimpl.conformance.adapters.torch_hooks import load_state


    def build(weights_dir):
        params = load_file(f"{weights_dir}/model.safetensors")
        return load_state(torchvision.models.resnet50(weights=None), params, load_map("torchvision_resnet50.keys"))


    NAMES = load_map("torchvision_resnet50.names")


    def correct(weights_dir):
        return {"model": build(weights_dir), "names": NAMES}


    def bgr(weights_dir):
        import refimpl

        ref = refimpl.load("resnet-50", weights_dir, dtype="float32", path="reference")

        def preprocess(image):  # right algorithm, channels reversed
            return torch.from_numpy(np.ascontiguousarray(ref.preprocess([np.asarray(image)])[:, ::-1]))

        return {"model": build(weights_dir), "names": NAMES, "preprocess": preprocess}


    def bn_eps(weights_dir):
        model = build(weights_dir)
        model.layer1[0].bn3.eps = 1e-3  # TensorFlow's default, in one layer
        return {"model": model, "names": NAMES}


    class SkipSecondCall(torch.nn.ReLU):
        """The block's shared ReLU, but its second use is missing."""

        calls = 0

        def forward(self, x):
            SkipSecondCall.calls += 1
            return x if SkipSecondCall.calls % 3 == 2 else super().forward(x)


    def missing_relu(weights_dir):
        model = build(weights_dir)
        model.layer2[1].relu = SkipSecondCall()
        return {"model": model, "names": NAMES}


    def v1_stride(weights_dir):
        model = build(weights_dir)
        model.layer2[0].conv1.stride, model.layer2[0].conv2.stride = (2, 2), (1, 1)  # ResNet v1, not v1.5
        return {"model": model, "names": NAMES}


    def transposed(weights_dir):
        model = build(weights_dir)
        model.maxpool.register_forward_hook(lambda m, i, out: out.transpose(2, 3).contiguous())
        return {"model": model, "names": NAMES}
''')

PLANTED = {
    # factory: (first divergence, diagnosis kind)
    "bgr": ("pixel_values", "channel swap"),
    "bn_eps": ("resnet.encoder.stages.0.layers.0.layer.2", "bn eps"),  # certify passes the BN statistics
    "missing_relu": ("resnet.encoder.stages.1.layers.1.layer.1", None),
    "v1_stride": ("resnet.encoder.stages.1.layers.0.layer.0", "stride mismatch"),  # issue 13: the size ratio names the stride
    "transposed": ("resnet.embedder", "layout transposed"),
}


@pytest.fixture(scope="module")
def port_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("port") / "port.py"
    path.write_text(FACTORIES)
    return path


@pytest.mark.slow
def test_torch_file_correct_port_certifies(resnet50_small_dir, port_file):
    check_certified(certify(f"torch:{port_file}:correct", "resnet-50", resnet50_small_dir, images=[CAT]))


@pytest.mark.parametrize("bug", list(PLANTED))
def test_planted_bugs_diverge_at_the_right_tensor(resnet50_small_dir, port_file, bug):
    name, kind = PLANTED[bug]
    report = certify(f"torch:{port_file}:{bug}", "resnet-50", resnet50_small_dir, images=[CAT])
    assert report.verdict == "diverges" and report.exit_code == 1, report.text()
    first = report.first_divergence
    assert first["name"] == name, report.text(tensors=True)
    if kind:
        assert first["diagnosis"]["kind"] == kind, first["diagnosis"]["message"]
    rows = report.cases[0]["report"].rows
    index = [r["name"] for r in rows].index(name)
    assert all(r["status"] != "fail" for r in rows[:index])  # everything before it is within budget


# --- cmd: and dump: ---------------------------------------------------------------------------------

PROGRAM = textwrap.dedent('''
    """A 'port' run as a program: reads pixel_values.npy, writes its tensors under its own names."""
    import sys

    import numpy as np
    from safetensors.numpy import load_file

    from refimpl.models import resnet

    weights, pixel_values, out, mode = sys.argv[1:5]
    x = np.load(pixel_values)
    if mode == "bgr":
        x = np.ascontiguousarray(x[:, ::-1])
    trace = {}
    resnet.classify(load_file(weights + "/model.safetensors"), x, trace)
    mine = {}
    for name, value in trace.items():
        if mode == "outputs" and name != "classifier.1":
            continue
        mine[name.replace("resnet.encoder.stages.", "stage/").replace("classifier.1", "logits")] = value
    np.savez(out, **mine)
''')


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    folder = tmp_path_factory.mktemp("program")
    (folder / "port_program.py").write_text(PROGRAM)
    (folder / "names.json").write_text(json.dumps({"stage/*": "resnet.encoder.stages.*", "logits": "classifier.1"}))
    return folder


def _cmd(program, weights, mode):
    return f"cmd:{sys.executable} {program / 'port_program.py'} {weights} {{pixel_values}} {{out}} {mode}"


def test_cmd_program_certifies_and_its_bug_diverges(resnet50_small_dir, program, capsys):
    impl = _cmd(program, resnet50_small_dir, "correct")
    code = main(["certify", impl, str(CAT), "--weights", str(resnet50_small_dir), "--map-file",
                 str(program / "names.json"), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["verdict"] == "certified" and data["scope"] == "layer by layer"
    assert data["coverage"]["compared"] == 77  # everything but the decoded image
    code = main(["certify", _cmd(program, resnet50_small_dir, "bgr"), str(CAT), "--weights", str(resnet50_small_dir),
                 "--map-file", str(program / "names.json")])
    text = capsys.readouterr().out
    assert code == 1 and "verdict: DIVERGES at pixel_values" in text and "RGB vs BGR" in text


def test_black_box_is_certified_on_outputs_only(resnet50_small_dir, program, capsys):
    code = main(["certify", _cmd(program, resnet50_small_dir, "outputs"), str(CAT), "--weights",
                 str(resnet50_small_dir), "--map-file", str(program / "names.json")])
    text = capsys.readouterr().out
    assert code == 0 and "verdict: CERTIFIED on outputs" in text and "only the final outputs were compared" in text
    assert "coverage: 1 of the reference's 78 tensors compared" in text


def test_without_the_final_outputs_nothing_is_certified(resnet50_small_dir, tmp_path, capsys):
    """The 1-of-78 case through certify: only the input under a checkpoint name -> incomplete (exit 3)."""
    import refimpl
    from refimpl.pipeline.decode import read_image

    model = refimpl.load("resnet-50", resnet50_small_dir, path="reference")
    t = {}
    model.predict(read_image(CAT)[1], t)
    raw = {"pixel_values": t["pixel_values"], **{f"/node_{i}/Relu_output_0": v for i, v in enumerate(list(t.values())[2:])}}
    np.savez(tmp_path / "raw.npz", **raw)
    code = main(["certify", f"dump:{tmp_path / 'raw.npz'}", str(CAT), "--weights", str(resnet50_small_dir)])
    text = capsys.readouterr().out
    assert code == 3 and "verdict: INCOMPLETE" in text and "CERTIFIED" not in text


def test_dump_nhwc_layout(resnet50_small_dir, tmp_path, capsys):
    import refimpl
    from refimpl.pipeline.decode import read_image

    model = refimpl.load("resnet-50", resnet50_small_dir, path="reference")
    t = {}
    model.predict(read_image(CAT)[1], t)
    np.savez(tmp_path / "nhwc.npz", **{k: (v.transpose(0, 2, 3, 1) if v.ndim == 4 else v) for k, v in t.items()})
    args = ["certify", f"dump:{tmp_path / 'nhwc.npz'}", str(CAT), "--weights", str(resnet50_small_dir)]
    assert main(args) == 1
    assert "layout transposed" in capsys.readouterr().out
    assert main(args + ["--layout", "nhwc"]) == 0


def test_errors_are_typed(resnet50_small_dir, capsys):
    assert main(["certify", "nonsense", str(CAT), "--weights", str(resnet50_small_dir)]) == 2
    assert "AdapterError" in capsys.readouterr().err
    assert main(["certify", "cmd:false {out}", str(CAT), "--weights", str(resnet50_small_dir)]) == 2
    assert "exited with code 1" in capsys.readouterr().err


def test_parts_for_coverage():
    assert part_of("resnet.encoder.stages.2.layers.1.layer.0") == "resnet.encoder.stages.2"
    assert part_of("model.decoder.layers.4.encoder_attn.attn_weights") == "model.decoder.layers.4"
    assert part_of("classifier.1") == "classifier.1" and part_of("pixel_values") == "pixel_values"
