"""refimpl check-endpoint: agreement against our own server, disagreement against wrong stubs."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from refimpl import cli
from refimpl.serving import contract
from refimpl.audit.endpoint import check_endpoint, endpoint_url
from refimpl.serving.server import ContractServer
from refimpl.pipeline import postprocess
from fixtures_contract import DETR, RESNET


@pytest.fixture(scope="module")
def images(tmp_path_factory, small_png, small_jpeg):
    folder = tmp_path_factory.mktemp("check-endpoint")
    paths = []
    for name, data in (("small.png", small_png), ("small.jpg", small_jpeg)):
        (folder / name).write_bytes(data)
        paths.append(str(folder / name))
    (folder / "broken.png").write_bytes(small_png[:200])
    return paths, str(folder / "broken.png")


class Stub:
    """An HTTP server on a free loopback port answering every POST with `answer(body) -> (status, obj)`."""

    def __init__(self, answer):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.requests.append((self.path, dict(self.headers), body))
                status, obj = answer(body)
                data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.requests = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def envelope(result):
    return {"result": result, "success": True, "errors": [], "messages": []}


def run_cli(capsys, *argv):
    code = cli.main(["check-endpoint", *argv])
    return code, capsys.readouterr().out


# --- agreement with our own server --------------------------------------------------------------

def test_agrees_with_our_server(contract_server, images, resnet50_dir, capsys):
    paths, _ = images
    code, out = run_cli(capsys, contract_server.url, "--model", RESNET, "--weights", str(resnet50_dir), *paths)
    assert code == 0, out
    assert "verdict: AGREE: 2 of 2 image(s)" in out
    assert out.count("HTTP 200") == 2 and "rank" in out and "problem" not in out


def test_json_output_and_json_body(contract_server, images, resnet50_dir, capsys):
    paths, broken = images
    route = contract_server.route(RESNET, "acct")  # the full route names the model: no --model
    code, out = run_cli(capsys, route, "--json", "--body", "json", "--weights", str(resnet50_dir), paths[0], broken)
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["images"] == 2
    first, second = report["checks"]
    assert first["http_status"] == 200 and first["verdict"]["status"] == "agree"
    assert len(first["verdict"]["rows"]) == 5 and first["verdict"]["rows"][0]["score_diff"] == 0.0
    # an image refimpl refuses agrees when the endpoint refuses it with the same status
    assert second["http_status"] == 400 and second["accepted"] is True
    assert any("refuses it too" in n for n in second["verdict"]["notes"])


def test_token(contract_weights, images, resnet50_dir, capsys, monkeypatch):
    paths, _ = images
    server = ContractServer(("127.0.0.1", 0), token="t0k", weights=contract_weights, log=lambda line: None).start()
    try:
        code, out = run_cli(capsys, server.url, "--model", RESNET, "--weights", str(resnet50_dir), paths[0])
        assert code == 1 and "HTTP 401" in out and "[10000]" in out
        code, out = run_cli(capsys, server.url, "--model", RESNET, "--token", "t0k", "--weights", str(resnet50_dir),
                            paths[0])
        assert code == 0, out
        monkeypatch.setenv("REFIMPL_ENDPOINT_TOKEN", "t0k")
        code, out = run_cli(capsys, server.url, "--model", RESNET, "--weights", str(resnet50_dir), paths[0])
        assert code == 0, out
    finally:
        server.stop()


# --- disagreement against wrong stubs -----------------------------------------------------------

@pytest.fixture
def stub():
    stubs = []

    def make(answer):
        stubs.append(Stub(answer))
        return stubs[-1]

    yield make
    for s in stubs:
        s.close()


def wrong_labels(body):
    return 200, envelope([{"label": name, "score": s} for name, s in
                          [("TABBY", 0.5), ("TIGER CAT", 0.2), ("EGYPTIAN CAT", 0.1), ("LYNX", 0.05), ("PUMA", 0.01)]])


def test_disagreement_is_detected(stub, images, resnet50_dir, capsys):
    """Five labels none of which is in the reference's top 5: the judge's rule for a response that
    is probably for another image (refimpl/audit/judge/classification.py)."""
    paths, _ = images
    s = stub(wrong_labels)
    code, out = run_cli(capsys, s.url + "/client/v4/accounts/x/ai/run", "--model", RESNET,
                        "--weights", str(resnet50_dir), *paths)
    assert code == 1
    assert "verdict: WRONG IMAGE?: 2 of 2 image(s) WRONG IMAGE?" in out and "problem: rank 1: label 'TABBY'" in out
    path, headers, body = s.requests[0]
    assert path == "/client/v4/accounts/x/ai/run/@cf/microsoft/resnet-50"
    assert body == open(paths[0], "rb").read() and headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize("answer,fragment", [
    (lambda body: (200, [{"label": "X", "score": "high"}]), "schema: $[0].score"),
    (lambda body: (200, {"result": [], "success": True}), "envelope: $: missing required property 'errors'"),
    (lambda body: (500, {"result": None, "success": False, "errors": [{"code": 3000, "message": "boom"}],
                         "messages": []}), "HTTP 500"),
    (lambda body: (200, b"<html>not json</html>"), "not JSON"),
])
def test_broken_endpoints(stub, images, resnet50_dir, capsys, answer, fragment):
    paths, _ = images
    s = stub(answer)
    code, out = run_cli(capsys, s.url, "--model", RESNET, "--weights", str(resnet50_dir), paths[0])
    assert code == 1 and fragment in out, out


def test_score_tolerance_option(stub, images, resnet50_dir, capsys, contract_weights):
    """Scores off by 0.003: a disagreement at --score-atol 0.001, agreement at the default."""
    paths, _ = images
    ours = contract.run(RESNET, open(paths[0], "rb").read(), weights=contract_weights["resnet-50"])
    s = stub(lambda body: (200, envelope([dict(r, score=r["score"] + 0.003) for r in ours])))
    code, out = run_cli(capsys, s.url, "--model", RESNET, "--weights", str(resnet50_dir), paths[0])
    assert code == 0, out
    code, out = run_cli(capsys, s.url, "--model", RESNET, "--weights", str(resnet50_dir), "--score-atol", "0.001",
                        paths[0])
    assert code == 1 and "scores differ by up to 0.003" in out


def test_unreachable_endpoint(images, resnet50_dir, capsys):
    paths, _ = images
    s = Stub(wrong_labels)
    url = s.url
    s.close()
    code, out = run_cli(capsys, url, "--model", RESNET, "--weights", str(resnet50_dir), "--timeout", "5", paths[0])
    assert code == 1 and "no answer from the endpoint" in out


def test_usage_errors(capsys, images):
    paths, _ = images
    assert cli.main(["check-endpoint", "http://127.0.0.1:1", paths[0]]) == 2  # no --model
    assert cli.main(["check-endpoint", "ftp://x", "--model", RESNET, paths[0]]) == 2
    with pytest.raises(SystemExit) as e:  # argparse: a usage error naming the models it knows
        cli.main(["check-endpoint", "http://x", "--model", "@cf/nope", paths[0]])
    assert e.value.code == 2
    assert cli.main(["check-endpoint", "http://x", "--model", RESNET, "--accept", "nonsense", paths[0]]) == 2
    capsys.readouterr()


def test_endpoint_url():
    assert endpoint_url("http://h:1", RESNET)[0] == "http://h:1/client/v4/accounts/local/ai/run/@cf/microsoft/resnet-50"
    assert endpoint_url("https://h/client/v4/accounts/A/ai/run/", DETR)[0] == \
        "https://h/client/v4/accounts/A/ai/run/@cf/facebook/detr-resnet-50"
    assert endpoint_url("http://h/client/v4/accounts/A/ai/run/@cf/facebook/detr-resnet-50?shape=hosted") == (
        "http://h/client/v4/accounts/A/ai/run/@cf/facebook/detr-resnet-50?shape=hosted", DETR)
    with pytest.raises(ValueError):
        endpoint_url("http://h/client/v4/accounts/A/ai/run/@cf/facebook/detr-resnet-50", RESNET)
    with pytest.raises(ValueError):
        endpoint_url("http://h/some/path", RESNET)


# --- DETR: a stub answering like the hosted API (issue 8) ---------------------------------------

def test_hosted_like_detr_endpoint(stub, tmp_path, detr_weights, detr_all_queries, detr_image):
    """A stub that answers our own output reshaped as the real hosted DETR does: the checker names
    the signatures; it agrees only when they are accepted."""
    every = detr_all_queries
    hosted = postprocess.hosted_shape([dict(d, score=d["score"] ** 3 * 4e-4) for d in every], wrap_uint16=True)
    s = stub(lambda body: (200, envelope(hosted)))
    image = tmp_path / "detr.jpg"
    image.write_bytes(detr_image)
    report = check_endpoint(s.url, DETR, [str(image)], accept=["hosted", "monotonic_score_transform"],
                            weights=detr_weights)
    (check,) = report.checks
    assert report.ok and check.verdict.status == "explained"
    assert {"no_threshold", "integer_rounding", "monotonic_score_transform"} <= set(check.verdict.signatures)
    assert not check.verdict.accepted(["hosted"])  # the score transform is not part of "hosted"


def test_incomplete_answer_exits_3_whatever_is_accepted(stub, tmp_path, detr_weights, detr_all_queries, detr_image,
                                                        capsys):
    """Issue 21: an answer with every query, one low-score row where no query is: nothing
    contradicts the reference but that row cannot be judged -> INCOMPLETE, exit 3 with --accept
    all; the lines say how many rows were judged."""
    hosted = postprocess.hosted_shape(detr_all_queries)
    low = next(i for i, d in enumerate(hosted) if d["score"] < 0.1)
    hosted[low] = dict(hosted[low], box={"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1})
    s = stub(lambda body: (200, envelope(hosted)))
    image = tmp_path / "detr.jpg"
    image.write_bytes(detr_image)
    code, out = run_cli(capsys, s.url, "--model", DETR, "--weights", str(detr_weights), "--accept", "all", str(image))
    assert code == 3, out
    assert "INCOMPLETE: too little of the claim was judged" in out and "99 of 100 claimed detection(s) judged" in out
    assert out.splitlines()[-1].startswith("verdict: INCOMPLETE: 1 of 1 image(s) INCOMPLETE")
    assert "[99 of 100 claimed row(s) judged]" in out.splitlines()[-1]
