"""refimpl serve: real HTTP over loopback to servers started by the tests (issue 4, part 2)."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from refimpl.serving import contract
from refimpl.serving.server import ContractServer, parse_route
from refimpl.pipeline import postprocess
from fixtures_contract import DETR, RESNET, encoded_image, recv_all, running_server

ROUTE = "/client/v4/accounts/acc123/ai/run/"


def call(server, path, body=None, method="POST", headers=None, timeout=60):
    """One HTTP request -> (status, headers, parsed JSON body or None)."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        return response.status, dict(response.getheaders()), (json.loads(raw) if raw else None)
    finally:
        conn.close()


def raw_call(server, data, timeout=10):
    """Send bytes as they are on a socket; return the parsed (status, JSON body)."""
    sock = socket.create_connection(server.server_address[:2], timeout=timeout)
    sock.sendall(data)
    return read_answer(sock)


def read_answer(sock):
    """Read a whole answer from a socket until the server closes it -> (status, JSON body)."""
    with sock:
        head, _, body = recv_all(sock).partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def assert_error(status, body, want_status, want_code, fragment=""):
    assert status == want_status, body
    assert body["success"] is False and body["result"] is None and body["messages"] == []
    assert len(body["errors"]) == 1 and body["errors"][0]["code"] == want_code, body
    assert isinstance(body["errors"][0]["message"], str) and fragment in body["errors"][0]["message"], body


@pytest.fixture(scope="module")
def expected(small_png, small_jpeg, contract_weights):
    w = contract_weights["resnet-50"]
    return {small_png: contract.run(RESNET, small_png, weights=w), small_jpeg: contract.run(RESNET, small_jpeg, weights=w)}


def assert_ok(status, body, result):
    assert status == 200, body
    assert body == {"result": result, "success": True, "errors": [], "messages": []}


def log_mark(server, quiet=0.2, timeout=5):
    """The number of log lines once the log has been quiet for `quiet` s: a line is written after
    its answer is sent, so an earlier request's line can still be on its way."""
    deadline = time.monotonic() + timeout
    count = len(server.lines)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        if len(server.lines) == count:
            break
        count = len(server.lines)
    return count


def new_lines(server, before, count, timeout=10):
    """The log lines after `before`, once there are at least `count` of them (or the timeout)."""
    deadline = time.monotonic() + timeout
    while len(server.lines) - before < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.lines[before:]


# --- success: both body forms -------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {},  # no content type at all
    {"Content-Type": "application/x-www-form-urlencoded"},  # what curl --data-binary sends
    {"Content-Type": "image/png"},
])

def test_raw_body(contract_server, small_png, expected, headers):
    status, _, body = call(contract_server, ROUTE + RESNET, small_png, headers=headers)
    assert_ok(status, body, expected[small_png])


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json; charset=utf-8"},
    {"Content-Type": "text/plain"},  # sniffed: starts with "{" and parses as an object
    {},
])
def test_json_body(contract_server, small_jpeg, expected, headers):
    payload = json.dumps({"image": list(small_jpeg)}).encode()
    status, _, body = call(contract_server, ROUTE + RESNET, payload, headers=headers)
    assert_ok(status, body, expected[small_jpeg])


def test_model_names_and_query_options(contract_server, small_png, expected, contract_weights):
    status, _, body = call(contract_server, ROUTE + "%40cf%2Fmicrosoft%2Fresnet-50", small_png)
    assert_ok(status, body, expected[small_png])
    status, _, body = call(contract_server, ROUTE + "microsoft/resnet-50?top_k=2&labels=raw", small_png)
    assert_ok(status, body, contract.run(RESNET, small_png, weights=contract_weights["resnet-50"], top_k=2,
                                         labels="raw"))
    assert len(body["result"]) == 2


def test_chunked_body(contract_server, small_png, expected):
    chunks = [small_png[i:i + 1000] for i in range(0, len(small_png), 1000)]
    data = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = (f"POST {ROUTE}{RESNET} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    status, body = raw_call(contract_server, head + data)
    assert_ok(status, body, expected[small_png])


# --- every error status, and the server still answers after each --------------------------------

def too_big():
    return b"\x89PNG" + b"\0" * (64 * 1024)


ERRORS = {
    # name: (method, path, body, headers, status, code, message fragment)
    "bad array element": ("POST", ROUTE + RESNET, b'{"image": [1, 2, 300]}', {"Content-Type": "application/json"},
                          400, 5004, "image[2] is 300"),
    "boolean element": ("POST", ROUTE + RESNET, b'{"image": [true]}', {}, 400, 5004, "boolean"),
    "nested array": ("POST", ROUTE + RESNET, b'{"image": [[1]]}', {}, 400, 5004, "image[0] is an array"),
    "NaN element": ("POST", ROUTE + RESNET, b'{"image": [NaN]}', {}, 400, 5004, "finite"),
    "missing image": ("POST", ROUTE + RESNET, b'{"images": [1]}', {}, 400, 5004, 'no "image" key'),
    "empty array": ("POST", ROUTE + RESNET, b'{"image": []}', {}, 400, 5004, "empty array"),
    "JSON array body": ("POST", ROUTE + RESNET, b"[1, 2, 3]", {"Content-Type": "application/json"}, 400, 5004,
                        "wrap the array"),
    "invalid JSON": ("POST", ROUTE + RESNET, b'{"image": [1, 2', {"Content-Type": "application/json"}, 400, 5004,
                     "not valid JSON"),
    "deeply nested JSON": ("POST", ROUTE + RESNET, b"[" * 50000, {"Content-Type": "application/json"}, 400, 5004,
                           "not valid JSON"),
    "not an image": ("POST", ROUTE + RESNET, b"just some text", {}, 400, 5004, "not an image"),
    "brace but not JSON": ("POST", ROUTE + RESNET, b"{not json", {}, 400, 5004, "not an image"),
    "truncated image": ("POST", ROUTE + RESNET, encoded_image(40, 30)[:300], {}, 400, 5004, "truncated"),
    "empty body": ("POST", ROUTE + RESNET, b"", {}, 400, 3003, "empty"),
    "bad option": ("POST", ROUTE + RESNET + "?top_k=0", b"x", {}, 400, 5004, "top_k"),
    "unknown option": ("POST", ROUTE + RESNET + "?shape=hosted", b"x", {}, 400, 5004, "unknown option"),
    "unknown model": ("POST", ROUTE + "@cf/microsoft/resnet-101", b"x", {}, 404, 3042, "unknown model"),
    "unknown route": ("POST", "/client/v4/accounts/acc123/ai/models", b"x", {}, 404, 7000, "no route"),
    "root": ("POST", "/", b"x", {}, 404, 7000, "no route"),
    "empty account": ("POST", "/client/v4/accounts//ai/run/" + RESNET, b"x", {}, 404, 7000, "no route"),
    "GET": ("GET", ROUTE + RESNET, None, {}, 405, 7001, "GET not allowed"),
    "PUT": ("PUT", ROUTE + RESNET, b"x", {}, 405, 7001, "PUT not allowed"),
    "DELETE": ("DELETE", ROUTE + RESNET, None, {}, 405, 7001, "DELETE not allowed"),
    "made-up method": ("BREW", ROUTE + RESNET, None, {}, 405, 7001, "BREW not allowed"),
    "too large": ("POST", ROUTE + RESNET, too_big(), {}, 413, 3006, "limit of 65536 bytes"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_error_statuses(contract_server, case, small_png, expected):
    method, path, data, headers, status, code, fragment = ERRORS[case]
    got_status, got_headers, body = call(contract_server, path, data, method=method, headers=headers)
    assert_error(got_status, body, status, code, fragment)
    assert got_headers["Content-Type"] == "application/json"
    if status == 405:
        assert got_headers["Allow"] == "POST"
    # the server still answers (test_still_correct_after_errors, next, checks a full answer)
    status, _, body = call(contract_server, ROUTE + "@cf/still/there", b"x")
    assert_error(status, body, 404, 3042)


def test_still_correct_after_errors(contract_server, small_png, expected):
    status, _, body = call(contract_server, ROUTE + RESNET, small_png)
    assert_ok(status, body, expected[small_png])


def test_head_and_malformed_requests(contract_server):
    status, headers, body = call(contract_server, ROUTE + RESNET, method="HEAD")
    assert status == 405 and body is None and headers["Allow"] == "POST"
    before = log_mark(contract_server)
    status, body = raw_call(contract_server, b"NONSENSE\r\n\r\n")
    assert_error(status, body, 400, 3003, "malformed request")
    assert re.fullmatch(r"- NONSENSE 400 \d+\.\dms", new_lines(contract_server, before, 1)[0])
    status, body = raw_call(contract_server, b"GET / HTTP/7.0\r\n\r\n")
    assert status == 505 and body["errors"][0]["code"] == 3003
    head = f"POST {ROUTE}{RESNET} HTTP/1.1\r\nHost: x\r\n\r\n".encode()  # no Content-Length, no body
    status, body = raw_call(contract_server, head)
    assert_error(status, body, 400, 3003, "no body")
    head = f"POST {ROUTE}{RESNET} HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n".encode()
    status, body = raw_call(contract_server, head)
    assert_error(status, body, 400, 3003, "Content-Length")
    big = b"%x\r\n%s\r\n" % (70000, b"\0" * 70000) + b"0\r\n\r\n"
    head = f"POST {ROUTE}{RESNET} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    status, body = raw_call(contract_server, head + big)
    assert_error(status, body, 413, 3006)


def test_client_that_goes_away(contract_server):
    """A client that announces a body and hangs up mid-way does not hurt the server."""
    before = log_mark(contract_server)
    with socket.create_connection(contract_server.server_address[:2]) as s:
        s.sendall(f"POST {ROUTE}{RESNET} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode() + b"x" * 100)
    status, _, body = call(contract_server, ROUTE + RESNET, b'{"image": [1.5]}')
    assert_error(status, body, 400, 5004, "image[0] is 1.5")
    assert any(" 400 " in line for line in new_lines(contract_server, before, 2, timeout=3))


# --- token --------------------------------------------------------------------------------------

def test_token(contract_weights, small_png, expected):
    server = ContractServer(("127.0.0.1", 0), token="s3cret", weights=contract_weights, log=lambda line: None).start()
    try:
        for headers, fragment in [({}, "missing"), ({"Authorization": "Bearer wrong"}, "wrong"),
                                  ({"Authorization": "Basic s3cret"}, "wrong"), ({"Authorization": "s3cret"}, "wrong"),
                                  ({"Authorization": "Bearer s3cret-and-more"}, "wrong")]:
            status, got_headers, body = call(server, ROUTE + RESNET, small_png, headers=headers)
            assert_error(status, body, 401, 10000, fragment)
            assert got_headers["WWW-Authenticate"].startswith("Bearer")
        status, _, body = call(server, ROUTE + RESNET, small_png, headers={"Authorization": "Bearer s3cret"})
        assert_ok(status, body, expected[small_png])
        # a route that does not exist is a 404 with or without a token
        status, _, body = call(server, "/nope", b"x")
        assert_error(status, body, 404, 7000)
    finally:
        server.stop()


def test_no_token_is_open(contract_server, small_png, expected):
    status, _, body = call(contract_server, ROUTE + RESNET, small_png, headers={"Authorization": "Bearer anything"})
    assert_ok(status, body, expected[small_png])
    assert contract_server.server_address[0] == "127.0.0.1"


# --- concurrency --------------------------------------------------------------------------------

@pytest.mark.slow
def test_concurrent_clients(contract_server, small_png, small_jpeg, expected):
    """8 clients x 25 requests, one in eight good (each runs ResNet-50), the others bad in nine
    ways: zero failures, every good answer equals run(), one log line per request."""
    bad = [ERRORS[k] for k in ("bad array element", "not an image", "unknown model", "GET", "too large",
                               "invalid JSON", "empty body", "unknown route", "nested array")]
    jobs = []
    for client in range(8):
        for i in range(25):
            n = client * 25 + i
            if n % 8 == 0:
                image = small_png if n % 16 == 0 else small_jpeg
                if n % 3 == 0:
                    jobs.append(("POST", ROUTE + RESNET, json.dumps({"image": list(image)}).encode(), {}, 200, image))
                else:
                    jobs.append(("POST", ROUTE + RESNET, image, {}, 200, image))
            else:
                method, path, data, headers, status, code, _ = bad[n % len(bad)]
                jobs.append((method, path, data, headers, status, code))

    def client(k):
        failures = []
        for job in jobs[k * 25:(k + 1) * 25]:
            status, _, body = call(contract_server, job[1], job[2], method=job[0], headers=job[3], timeout=120)
            if job[4] == 200:
                if status != 200 or body["result"] != expected[job[5]]:
                    failures.append((job[1], status, body))
            elif status != job[4] or body["errors"][0]["code"] != job[5]:
                failures.append((job[1], status, body))
        return failures

    lines_before = log_mark(contract_server)
    with ThreadPoolExecutor(8) as pool:
        failures = [f for fs in pool.map(client, range(8)) for f in fs]
    assert failures == []
    new = new_lines(contract_server, lines_before, 200)
    time.sleep(0.2)  # and nothing more arrives
    new = contract_server.lines[lines_before:]
    assert len(new) == 200, [line for line in new if not re.fullmatch(r"\S+ \S+ \d{3} \d+\.\dms", line)]


def test_log_lines(contract_server, small_png):
    """One line per request: method, path, status, ms."""
    before = log_mark(contract_server)
    call(contract_server, ROUTE + RESNET + "?top_k=1", b"not an image")
    call(contract_server, "/elsewhere", b"x", method="PUT")
    ours = sorted(new_lines(contract_server, before, 2), key=lambda line: not line.startswith("POST"))
    assert len(ours) == 2, ours  # each line is written by its request's thread: sort, then check
    assert re.fullmatch(r"POST /client/v4/accounts/acc123/ai/run/@cf/microsoft/resnet-50\?top_k=1 400 \d+\.\dms", ours[0])
    assert re.fullmatch(r"PUT /elsewhere 404 \d+\.\dms", ours[1])


# --- shutdown -----------------------------------------------------------------------------------

def test_stop_waits_for_requests_in_flight(contract_weights, small_png, expected, monkeypatch):
    """stop() finishes inference in flight, and answers a client stalled mid-body at once with
    408/3008 instead of waiting for it (issue 14, item 3)."""
    real_predict = contract.predict
    started = threading.Event()

    def slow_predict(*args, **kwargs):
        started.set()
        time.sleep(0.5)
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(contract, "predict", slow_predict)
    server = ContractServer(("127.0.0.1", 0), weights=contract_weights, log=lambda line: None).start()
    stalled = socket.create_connection(server.server_address[:2], timeout=10)
    stalled.sendall(f"POST {ROUTE}{RESNET} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode() + b"x" * 10)
    answer = {}
    t = threading.Thread(target=lambda: answer.update(r=call(server, ROUTE + RESNET, small_png)))
    t.start()
    assert started.wait(10)
    t0 = time.monotonic()
    server.stop()  # returns only when the request in flight has been answered
    assert time.monotonic() - t0 < 5  # not the 30 s request timeout of the stalled client
    status, body = read_answer(stalled)
    assert_error(status, body, 408, 3008, "shut down")
    assert not t.is_alive() or (t.join(5) or not t.is_alive())
    status, _, body = answer["r"]
    assert_ok(status, body, expected[small_png])
    with pytest.raises(OSError):
        call(server, ROUTE + RESNET, small_png, timeout=2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_subprocess_signals(resnet50_dir, sig, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "refimpl", "serve", "--port", "0", "--weights", f"resnet-50={resnet50_dir}",
         "--token", "tok"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    try:
        line = proc.stderr.readline()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        assert m, line
        port = int(m.group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", ROUTE + RESNET, body=b"not an image", headers={"Authorization": "Bearer tok"})
        response = conn.getresponse()
        assert response.status == 400 and json.loads(response.read())["errors"][0]["code"] == 5004
        conn.close()
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
        rest = proc.stderr.read()
        assert re.search(r"POST /client/v4/accounts/acc123/ai/run/@cf/microsoft/resnet-50 400 \d", rest)
        assert "shutting down" in rest and "stopped" in rest and "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- DETR through the server --------------------------------------------------------------------

def test_detr_shapes(contract_server, detr_weights, detr_all_queries, detr_image):
    contract_server.weights["detr-resnet-50"] = detr_weights
    status, _, body = call(contract_server, ROUTE + DETR + "?shape=hosted&wrap_uint16=1", detr_image, timeout=300)
    assert_ok(status, body, postprocess.hosted_shape(detr_all_queries, wrap_uint16=True))
    status, _, body = call(contract_server, ROUTE + DETR + "?shape=pretty", detr_image)
    assert_error(status, body, 400, 5004, "shape")


def test_parse_route():
    assert parse_route("/client/v4/accounts/a/ai/run/@cf/microsoft/resnet-50") == ("a", "@cf/microsoft/resnet-50")
    assert parse_route("/client/v4/accounts/a/ai/run/") is None
    assert parse_route("/client/v4/accounts/a/b/ai/run/m") is None
    assert parse_route("/client/v4/accounts/a/ai/run") is None


# --- hardening (issue 14): framing, deadlines, 100-continue, the model queue ---------------------

HEAD = f"POST {ROUTE}{RESNET} HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture(scope="module")
def quick_server(contract_weights):
    """A server with a 1.5 s request deadline, logging into `server.lines`."""
    yield from running_server(contract_weights, request_timeout=1.5)


def open_socket(server, data=b"", timeout=10):
    s = socket.create_connection(server.server_address[:2], timeout=timeout)
    if data:
        s.sendall(data)
    return s


def test_negative_chunk_size_is_refused_at_once(contract_server):
    """Item 1: `-1` made the server read the whole stream. Now a 400 while the client keeps the
    connection open (the answer does not wait for the client to close)."""
    s = open_socket(contract_server, (HEAD + "Transfer-Encoding: chunked\r\n\r\n-1\r\n").encode() + b"x" * 1000)
    t0 = time.monotonic()
    status, body = read_answer(s)
    assert time.monotonic() - t0 < 5
    assert_error(status, body, 400, 3003, "chunk size")


@pytest.mark.parametrize("size_line, fragment", [
    (b"-1", "chunk size"), (b"+10", "chunk size"), (b"0x10", "chunk size"), (b"", "chunk size"),
    (b"1" * 17, "chunk size"), (b"10;" + b"e" * 5000, "longer than 1024 bytes"),
])
def test_malformed_chunk_lines_are_400(contract_server, size_line, fragment):
    """Item 8: a 5,000-character chunk extension was a 413; chunk sizes are 1-16 hex digits."""
    status, body = raw_call(contract_server, (HEAD + "Transfer-Encoding: chunked\r\n\r\n").encode() + size_line
                            + b"\r\nabc\r\n0\r\n\r\n")
    assert_error(status, body, 400, 3003, fragment)


@pytest.mark.parametrize("headers, fragment", [
    ("Content-Length: 5\r\nContent-Length: 6\r\n", "conflicting Content-Length"),
    ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "both Transfer-Encoding and Content-Length"),
    ("Transfer-Encoding: gzip, chunked\r\n", "not supported"),
    ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "not supported"),
    ("Content-Length: +5\r\n", "malformed Content-Length"),
    ("Content-Length: 1_0\r\n", "malformed Content-Length"),
])
def test_ambiguous_framing_is_400(contract_server, headers, fragment):
    """Item 8: two conflicting Content-Length headers were accepted (the first won)."""
    status, body = raw_call(contract_server, (HEAD + headers + "\r\n").encode() + b"5\r\nhello\r\n0\r\n\r\n")
    assert_error(status, body, 400, 3003, fragment)


def test_identical_content_length_headers_are_one(contract_server, small_png, expected):
    n = len(small_png)
    status, body = raw_call(contract_server, (HEAD + f"Content-Length: {n}\r\nContent-Length: {n}\r\n\r\n").encode()
                            + small_png)
    assert_ok(status, body, expected[small_png])


def test_stalled_client_gets_408_not_500(quick_server):
    """Item 2: half a body and then silence was a 500 'internal error: TimeoutError'."""
    before = log_mark(quick_server)
    s = open_socket(quick_server, (HEAD + "Content-Length: 5000\r\n\r\n").encode() + b"x" * 100)
    status, body = read_answer(s)
    assert_error(status, body, 408, 3007, "not complete within 1.5 s")
    lines = new_lines(quick_server, before, 1)
    assert lines and " 408 " in lines[0] and not any("internal error" in line for line in lines)


def test_deadline_covers_the_whole_request(quick_server):
    """Item 3: the timeout was per read, so one byte every 10 s was never dropped. Here one byte
    every 0.3 s: 408 once the 1.5 s deadline has passed, for headers and for bodies alike."""
    for prefix, rest in [(HEAD.encode(), b"X-Slow: " + b"a" * 50),
                         ((HEAD + "Content-Length: 50\r\n\r\n").encode(), b"b" * 50)]:
        s = open_socket(quick_server, prefix)
        t0 = time.monotonic()
        try:
            for byte in rest:
                s.sendall(bytes([byte]))
                time.sleep(0.3)
        except OSError:  # the server closed the connection: expected, read the answer
            pass
        status, body = read_answer(s)
        assert 1.4 < time.monotonic() - t0 < 6
        assert_error(status, body, 408, 3007)


def test_silent_connection_gets_408(quick_server):
    s = open_socket(quick_server)
    status, body = read_answer(s)
    assert_error(status, body, 408, 3007, "request line")


def test_expect_100_continue_is_answered(contract_server, small_png, expected):
    """Item 8: curl's `Expect: 100-continue` cost about a second (curl waits that long for the 100)."""
    s = open_socket(contract_server, (HEAD + f"Content-Length: {len(small_png)}\r\nExpect: 100-continue\r\n\r\n")
                    .encode())
    t0 = time.monotonic()
    interim = s.recv(64)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n" and time.monotonic() - t0 < 0.5
    s.sendall(small_png)
    status, body = read_answer(s)
    assert_ok(status, body, expected[small_png])


def test_expect_100_continue_refused_without_the_body(contract_server):
    """A request refused before its body (here 413) gets the final answer instead of a 100."""
    s = open_socket(contract_server, (HEAD + "Content-Length: 999999\r\nExpect: 100-continue\r\n\r\n").encode())
    status, body = read_answer(s)
    assert_error(status, body, 413, 3006)


def test_refusals_are_not_queued_behind_inference(contract_server, small_png):
    """Item 8: bad images and bad arrays waited in the one-at-a-time model queue. With the only
    model slot taken, they are still answered at once."""
    assert contract_server.model_slots.acquire(timeout=60)
    try:
        for data in (b"not an image", b'{"image": [1, 2, 300]}', small_png[:100]):
            t0 = time.monotonic()
            status, _, body = call(contract_server, ROUTE + RESNET, data, timeout=10)
            assert status == 400 and body["errors"][0]["code"] == 5004, body
            assert time.monotonic() - t0 < 5
    finally:
        contract_server.model_slots.release()


@pytest.mark.parametrize("raw, status", [
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (HEAD.encode() + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (HEAD.encode() + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431),
    (b"POST / HTTP/2.0\r\n\r\n", 505),
])
def test_documented_protocol_statuses(contract_server, raw, status):
    """Item 8: 414, 431 and 505 are answered with the envelope (and documented in the README)."""
    got, body = raw_call(contract_server, raw)
    assert_error(got, body, status, 3003, "malformed request")


def test_request_timeout_option_is_checked(contract_weights):
    with pytest.raises(ValueError, match="request_timeout"):
        ContractServer(("127.0.0.1", 0), weights=contract_weights, request_timeout=0)
