"""Fuzzing the server's HTTP layer (issue 14) on loopback: hypothesis builds request lines,
headers and bodies (Content-Length, chunked framing with random sizes, extensions and
terminators, Expect, odd versions) and sends the bytes raw. The only allowed outcomes are the
exact answer run() gives, or the error envelope with a documented status and code (the README's
table of server promises): never a 500, a traceback in the log, an empty reply or a hang (every
exchange is bounded in time)."""

import json
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refimpl.serving import contract
from fixtures_contract import RESNET, encoded_image, recv_all, running_server

ROUTE = "/client/v4/accounts/fuzz/ai/run/"
# status -> the codes it may carry (README, "### `refimpl serve`")
DOCUMENTED = {400: {3003, 5004}, 401: {10000}, 404: {3042, 7000}, 405: {7001}, 408: {3007, 3008},
              413: {3006}, 414: {3003}, 431: {3003}, 505: {3003}}
EXCHANGE_LIMIT = 30  # seconds for one request and its whole answer
PNG = encoded_image(40, 30, "PNG", seed=7)


@pytest.fixture(scope="module")
def server(contract_weights):
    for server in running_server(contract_weights, request_timeout=3):
        yield server
    assert not [line for line in server.lines if "internal error" in line or "Traceback" in line]


@pytest.fixture(scope="module")
def answers(contract_weights):
    """The exact results a 200 may carry, by query string."""
    w = contract_weights["resnet-50"]
    return {"": contract.run(RESNET, PNG, weights=w), "?top_k=2": contract.run(RESNET, PNG, weights=w, top_k=2)}


token = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=10)
any_text = st.text(max_size=20)
methods = st.sampled_from(["POST", "POST", "POST", "GET", "HEAD", "PUT", "BREW"]) | token
paths = st.sampled_from([ROUTE + RESNET, ROUTE + RESNET, ROUTE + RESNET + "?top_k=2", ROUTE + RESNET + "?top_k=x",
                         ROUTE + "%40cf%2Fmicrosoft%2Fresnet-50", ROUTE + "@cf/nope", "/", "/client/v4/accounts//ai/run/a",
                         ROUTE + RESNET + "?shape=hosted"]) | token.map(lambda t: "/" + t)
versions = st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1x", "", "HTTP/0.9", "http/1.1"])
bodies = st.sampled_from([PNG, PNG, b"not an image", b'{"image": [1, 2, 3]}', json.dumps({"image": list(PNG)}).encode(),
                          b"", b"{", PNG[:50], b"\x89PNG" + b"\0" * 70000]) | st.binary(max_size=300)
header_names = st.sampled_from(["Content-Length", "Transfer-Encoding", "Content-Type", "Expect", "Authorization",
                                "Host", "Connection"]) | token
header_values = st.sampled_from(["chunked", "gzip", "100-continue", "application/json", "image/png", "-1", "0",
                                 "99999999999999999999", "5", " 12 ", "Bearer x", "close", ""]) | any_text


@st.composite
def chunked(draw, body, clean=False):
    """A chunked body: the body cut into chunks, each size line correct or corrupted (not when
    `clean`), with an optional extension; a last-chunk and trailers, or not."""
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)]) if b > a]
    out = b""
    for piece in pieces:
        good = ["%x" % len(piece), "%X" % len(piece), "%04x" % len(piece)]
        size = draw(st.sampled_from(good if clean else good * 2 + ["-1", "zz", "", "+5", "0x10", "FFFFFFFFFFFFFFFFF",
                                                                   " %x" % len(piece)]))
        ext = draw(st.sampled_from(["", ";a=b", ";x"] if clean else ["", "", ";a=b", ";" + "e" * 2000])
                   | (st.nothing() if clean else any_text.map(lambda t: ";" + t)))
        end = b"\r\n" if clean else draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"", b"xx"]))
        out += size.encode() + ext.encode(errors="replace") + b"\r\n" + piece + end
    out += draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nX-T: 1\r\n\r\n"] if clean else
                                [b"0\r\n\r\n", b"0\r\n\r\n", b"0\r\nX-T: 1\r\n\r\n", b"", b"0\r\n"]))
    return out


@st.composite
def requests(draw):
    clean = draw(st.integers(0, 3)) == 0  # a well-formed request (the answer must then be exact)
    method, path, version = draw(methods), draw(paths), draw(versions)
    if clean:
        method, version = "POST", "HTTP/1.1"
    line = f"{method} {path} {version}".rstrip() if clean or draw(st.integers(0, 19)) else draw(any_text)
    body = draw(bodies)
    framing = draw(st.sampled_from(["length", "chunked"] if clean else
                                   ["length", "length", "chunked", "none", "wrong length"]))
    headers = [("Host", "fuzz")]
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
        payload = body
    elif framing == "wrong length":
        headers.append(("Content-Length", str(max(len(body) + draw(st.integers(-20, 20)), 0))))
        payload = body
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        payload = draw(chunked(body, clean))
    else:
        payload = body
    if not clean:
        headers += draw(st.lists(st.tuples(header_names, header_values), max_size=3))
    elif draw(st.booleans()):
        headers.append(("Expect", "100-continue"))
    head = line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in draw(st.permutations(headers))) + "\r\n"
    return head.encode("utf-8", errors="replace") + payload, path


def exchange(server, data):
    """Send `data`, half-close, read until the server closes -> the raw answer (bounded in time)."""
    deadline = time.monotonic() + EXCHANGE_LIMIT
    with socket.create_connection(server.server_address[:2], timeout=EXCHANGE_LIMIT) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before reading everything: read the answer
            pass
        return recv_all(s, deadline, resets=True)


def check_answer(raw, path, answers):
    assert raw, "empty reply"
    head, sep, body = raw.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 100 Continue"):  # the interim answer to Expect: 100-continue
        head, sep, body = body.partition(b"\r\n\r\n")
    assert sep, raw[:200]
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status = status_line.split(" ")[:2]
    status = int(status)
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    assert version == "HTTP/1.0" and headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body) or body == b""  # HEAD answers carry no body
    if body == b"":
        return status
    envelope = json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} in the answer"))
    assert set(envelope) == {"result", "success", "errors", "messages"}
    if status == 200:
        query = path[path.index("?"):] if "?" in path else ""
        assert envelope["success"] is True and envelope["result"] == answers[query]
    else:
        assert status in DOCUMENTED, envelope
        assert envelope["success"] is False and envelope["result"] is None
        assert [e["code"] for e in envelope["errors"]][0] in DOCUMENTED[status], envelope
    return status


FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=60, **FUZZ)
@given(requests())
def test_fuzzed_requests(server, answers, request):
    data, path = request
    check_answer(exchange(server, data), path, answers)


@pytest.mark.slow
@settings(max_examples=500, **FUZZ)
@given(requests())
def test_fuzzed_requests_long(server, answers, request):
    """The same, longer (about 40 s here: a quarter of the requests are well-formed, and a 200
    runs ResNet-50)."""
    data, path = request
    check_answer(exchange(server, data), path, answers)


def test_the_server_still_answers_exactly(server, answers):
    data = (f"POST {ROUTE}{RESNET} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(PNG)}\r\n\r\n").encode() + PNG
    assert check_answer(exchange(server, data), ROUTE + RESNET, answers) == 200



@pytest.fixture(scope="module")
def impatient_server(contract_weights):
    """A server with a 0.5 s request deadline."""
    yield from running_server(contract_weights, request_timeout=0.5)


@settings(max_examples=12, **FUZZ)
@given(requests(), st.floats(0, 1))
def test_fuzzed_requests_that_stall(impatient_server, answers, request, fraction):
    """The same requests cut anywhere and then left open (no half-close): the answer comes
    within the deadline (a 408) or earlier (a refusal that needed no more bytes), never a hang."""
    data, path = request
    deadline = time.monotonic() + 10
    with socket.create_connection(impatient_server.server_address[:2], timeout=10) as s:
        try:
            s.sendall(data[: int(len(data) * fraction)])
        except OSError:
            pass
        answer = recv_all(s, deadline, resets=True)  # within 10 s for a 0.5 s deadline
    check_answer(answer, path, answers)
