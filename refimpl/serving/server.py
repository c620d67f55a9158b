"""A local, compatible endpoint of the hosted API: `refimpl serve`.

One route, the hosted API's:

    POST /client/v4/accounts/{account_id}/ai/run/{model}     model: @cf/microsoft/resnet-50, ...

The body is the raw image bytes (any content type but JSON: what `curl --data-binary @cat.png`
sends) or a JSON object per the input schema, `{"image": [...]}`. A body is JSON when its
Content-Type is application/json (or *+json), or when it starts with `{` and parses as a JSON
object (no image format starts with `{`). Every answer is the hosted API's envelope:

    {"result": <output>, "success": true, "errors": [], "messages": []}
    {"result": null, "success": false, "errors": [{"code": 5004, "message": "..."}], "messages": []}

Statuses: 200 success; 400 bad input (5004 invalid data, 3003 empty body or malformed framing:
conflicting Content-Length, Content-Length with chunked, bad chunk size, chunk line over 1024
bytes, malformed request line or headers); 401 missing or wrong `Authorization: Bearer` when the
server has a token (10000); 404 unknown model (3042) or unknown route (7000); 405 a method other
than POST on the route (7001); 408 the request (line, headers, body) not complete within
`request_timeout` (3007) or the server shutting down while it was sent (3008); 413 body larger
than `max_body` (3006); 414 request line over 65536 bytes, 431 a header line over 65536 bytes or
more than 100 headers, 505 an HTTP version other than 1.x (all 3003); 500 weights cannot be
loaded or produce non-finite outputs (5007) or an internal error (3000). The table in the README
("### `refimpl serve`") is the same list.

Query options select the output shape (see refimpl.serving.contract): `?top_k=3&labels=raw` for
ResNet-50; `?shape=hosted`, `?threshold=0.7`, `?threshold=none`, `?shape=hosted&wrap_uint16=1`
for DETR. Unknown options are a 400.

Built on the standard library's `http.server.ThreadingHTTPServer`: refimpl's runtime
dependencies stay numpy, Pillow, safetensors and huggingface-hub; one thread per connection is
enough for a reference endpoint (numpy releases the GIL in BLAS; connections, parsing and
refusals run concurrently, and a semaphore bounds how many requests run a model at once); and
the whole server stays readable in one file. It speaks
HTTP/1.0 (one request per connection), which every client handles and which lets shutdown wait
for in-flight requests without waiting on idle keep-alive connections.
"""

import hmac
import json
import re
import signal
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from refimpl import registry
from refimpl.models import check_path
from refimpl.serving import contract
from refimpl.serving.schemas import envelope
from refimpl.errors import (
    AuthenticationError,
    IncompleteRequestError,
    InvalidJSONError,
    InvalidOptionError,
    MethodNotAllowedError,
    RefimplError,
    RequestAbortedError,
    RequestTimeoutError,
    RequestTooLargeError,
    RouteNotFoundError,
)

ROUTE_PREFIX = "/client/v4/accounts/"
ROUTE_TEMPLATE = "/client/v4/accounts/{account_id}/ai/run/{model}"
DEFAULT_MAX_BODY = 10 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds for the whole request (line, headers, body): then 408
DRAIN_LIMIT = 64 * 1024 * 1024  # unread bodies up to this size are read and dropped before answering
MAX_CHUNK_LINE = 1024  # bytes of a chunk size line, extension included (longer: 400)
MAX_TRAILERS = 32  # trailer lines after the last chunk (more: 400)
INTERNAL_ERROR_CODE = 3000  # refimpl's choice: the hosted API publishes no code for this
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def parse_route(path):
    """'/client/v4/accounts/abc/ai/run/@cf/microsoft/resnet-50' -> ('abc', '@cf/microsoft/resnet-50'),
    or None. `path` is the URL path, percent-decoded by the caller."""
    if not path.startswith(ROUTE_PREFIX):
        return None
    account, sep, model = path[len(ROUTE_PREFIX):].partition("/ai/run/")
    if not sep or not account or "/" in account or not model:
        return None
    return account, model


class _Refusal(Exception):
    """Carry an error plus extra response headers out of the request handler."""

    def __init__(self, error, headers=()):
        super().__init__(str(error))
        self.error = error
        self.headers = list(headers)


class ContractHandler(BaseHTTPRequestHandler):
    """One connection, one request (HTTP/1.0). The request -- request line, headers and body --
    must arrive within the server's `request_timeout` (one deadline for all of it, not per read):
    a watchdog then shuts the socket's read side, the pending read returns, and the client gets
    408 (code 3007) and a closed connection. Inference is not under the deadline."""

    server_version = "refimpl-serve"
    protocol_version = "HTTP/1.0"

    # -- the connection and its deadline ----------------------------------------------------------

    def setup(self):
        # Per-read socket timeout: a backstop a little beyond the deadline (the watchdog normally
        # fires first); it also bounds how long writing an answer to a client that never reads may
        # block.
        self.timeout = self.server.request_timeout + 5
        super().setup()
        self._lock = threading.Lock()
        self._reading = True  # until the whole request has been read
        self._expired = None  # None, "timeout" or "shutdown": why the read side was shut
        self._body_read = False
        self._watchdog = threading.Timer(self.server.request_timeout, self.expire, args=("timeout",))
        self._watchdog.daemon = True
        self._watchdog.start()
        self.server.track(self, True)

    def finish(self):
        self._watchdog.cancel()
        self.server.track(self, False)
        super().finish()

    def expire(self, reason):
        """Stop reading this request now (deadline passed, or the server is shutting down): shut
        the socket's read side, so a read blocked on a stalled client returns at once."""
        with self._lock:
            if not self._reading or self._expired:
                return
            self._expired = reason
            try:
                self.connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def _request_read(self):
        """The whole request is in: the deadline no longer applies (inference may take longer)."""
        with self._lock:
            self._reading = False
        self._watchdog.cancel()

    def _cut_short(self, what):
        """The error for a request that ended before `what` was complete."""
        self._body_read = True  # nothing more can be read: do not try to drain
        if self._expired == "shutdown":
            return RequestAbortedError(f"the server shut down before the request was complete ({what})")
        if self._expired:
            return RequestTimeoutError(
                f"the request (headers and body) was not complete within {self.server.request_timeout:g} s "
                f"({what}); send the whole request promptly")
        return IncompleteRequestError(f"the request ended before {what} was complete")

    def _readline(self, limit, what):
        """One line of at most `limit` bytes, ending in LF; a longer line is a 400, a short read
        (EOF, deadline) the _cut_short error."""
        try:
            line = self.rfile.readline(limit + 1)
        except OSError:
            line = b""
        if len(line) > limit:
            self._body_read = True
            raise IncompleteRequestError(f"malformed request: {what} longer than {limit} bytes")
        if line.endswith(b"\n"):
            return line
        raise self._cut_short(what)

    def _read_exactly(self, n, what):
        try:
            data = self.rfile.read(n)
        except OSError:
            data = b""
        if len(data) < n:
            raise self._cut_short(what)
        return data

    # -- one request --------------------------------------------------------------------------------

    def handle_one_request(self):
        """The base class's, with the deadline: read and parse the request line and headers, then
        answer (every method goes through _handle: POST answers, others get 405 or 404)."""
        self.command, self.path, self.requestline = None, "", ""
        self.request_version = "HTTP/1.0"
        self.close_connection = True
        start = time.perf_counter()
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:
            self.raw_requestline = b""
        if self._expired and not self.raw_requestline.endswith(b"\n"):
            return self._finish_error(self._cut_short("the request line"), start)
        if len(self.raw_requestline) > 65536:
            return self.send_error(414, "request line longer than 65536 bytes")
        if not self.raw_requestline:
            return  # the client connected and closed without a word: nothing to answer
        if not self.raw_requestline.strip():
            return self.send_error(400, "empty request line")  # the base class would close without a word
        try:
            parsed = self.parse_request()  # reads the headers; answers 400/431/505 itself
        except OSError:
            parsed = None
        if parsed is None or (parsed and self._expired):
            return self._finish_error(self._cut_short("the headers"), start)
        if parsed:
            self._handle(start)

    def _finish_error(self, error, start):
        self._finish(error.status, envelope(error=error), [], start)

    def _handle(self, start):
        self._body_read = False
        headers = []
        try:
            status, payload = 200, envelope(self._answer())
        except _Refusal as r:
            status, payload, headers = r.error.status, envelope(error=r.error), r.headers
        except RefimplError as e:
            status, payload = e.status, envelope(error=e)
        except Exception as e:  # noqa: BLE001 - never die on input: answer 500 and keep serving
            status, payload = 500, envelope(error=_internal_error(e))
            self.server.log(f"internal error on {self.command} {self._log_path()}: "
                            + "".join(traceback.format_exception_only(type(e), e)).strip())
        self._finish(status, payload, headers, start)

    def _answer(self):
        url = urlsplit(self.path)
        route = parse_route(unquote(url.path))
        if route is None:
            raise RouteNotFoundError(f"no route for {url.path}; the route is POST {ROUTE_TEMPLATE}")
        if self.command != "POST":
            raise _Refusal(MethodNotAllowedError(f"method {self.command} not allowed; use POST"), [("Allow", "POST")])
        self._check_token()
        model = route[1]
        registry.get(model)  # 404 for unknown models, before the body is read
        try:
            query = dict(parse_qsl(url.query, keep_blank_values=True, strict_parsing=False))
        except ValueError as e:
            raise InvalidOptionError(f"malformed query string: {e}") from None
        options = contract.parse_query_options(model, query)
        body = self._read_body()
        # Refusals that need no model (bad JSON, bad array, bytes that do not decode) are found
        # here, concurrently, and never wait in the model queue behind real inference.
        prepared = contract.prepare(model, self._inputs(body), **options, **self.server.loading_options(model))
        with self.server.model_slots:
            return contract.predict(*prepared)

    def _check_token(self):
        token = self.server.token
        if token is None:
            return
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            what = "missing" if not given else "wrong"
            raise _Refusal(AuthenticationError(f"authentication error: {what} Authorization: Bearer token"),
                           [("WWW-Authenticate", 'Bearer realm="refimpl"')])

    # -- the body: strict framing -------------------------------------------------------------------

    def _framing(self):
        """("chunked", None) or ("length", n), or a 400 for ambiguous or malformed framing: both
        Transfer-Encoding and Content-Length, a transfer coding other than chunked, conflicting
        Content-Length values, or one that is not plain decimal digits."""
        te = self.headers.get_all("Transfer-Encoding") or []
        cl = self.headers.get_all("Content-Length") or []
        if te:
            self._body_read = True  # a refused chunked body cannot be skipped: the connection closes
            if cl:
                raise IncompleteRequestError("malformed request: both Transfer-Encoding and Content-Length "
                                             "(ambiguous framing, refused)")
            if len(te) != 1 or te[0].strip().lower() != "chunked":
                raise IncompleteRequestError(f"malformed request: Transfer-Encoding {', '.join(te)[:60]!r} "
                                             "is not supported (only chunked)")
            self._body_read = False
            return "chunked", None
        if not cl:
            self._body_read = True
            raise IncompleteRequestError("request has no body: send the image bytes "
                                         "(curl --data-binary @image.png) or {\"image\": [...]}")
        values = {v.strip() for v in cl}
        if len(values) != 1:
            self._body_read = True
            raise IncompleteRequestError("malformed request: conflicting Content-Length headers "
                                         f"({', '.join(sorted(values))[:60]})")
        value = values.pop()
        if not re.fullmatch(r"[0-9]{1,18}", value):
            self._body_read = True  # nothing sensible to drain
            raise IncompleteRequestError(f"malformed Content-Length: {value[:40]!r}")
        return "length", int(value)

    def _read_body(self):
        limit = self.server.max_body
        kind, n = self._framing()
        if kind == "length" and n > limit:
            raise RequestTooLargeError(f"request body is {n} bytes, more than the limit of {limit} bytes")
        self._continue()
        if kind == "chunked":
            body = self._read_chunked(limit)
        else:
            body = self._read_exactly(n, f"the body of {n} bytes")
        self._body_read = True
        self._request_read()
        if not body:
            raise IncompleteRequestError("request body is empty: send the image bytes "
                                         "(curl --data-binary @image.png) or {\"image\": [...]}")
        return body

    def _continue(self):
        """Answer `Expect: 100-continue` (curl sends it for bodies over 1 MB and otherwise waits
        a second) once the request has passed every check that needs no body."""
        if self.headers.get("Expect", "").strip().lower() == "100-continue" and self.request_version == "HTTP/1.1":
            try:
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass

    def _read_chunked(self, limit):
        """A chunked body: each size line is hex digits (at most 16) with an optional extension,
        the whole line at most MAX_CHUNK_LINE bytes; each chunk's data ends with CRLF; at most
        MAX_TRAILERS trailer lines. The running total is checked against `limit` before reading."""
        chunks, total = [], 0
        while True:
            line = self._readline(MAX_CHUNK_LINE, "a chunk size line")
            size_text = line.split(b";", 1)[0].strip(b" \t\r\n")
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
                self._body_read = True
                raise IncompleteRequestError(f"malformed chunked body: chunk size {size_text[:20]!r} is not hex digits")
            size = int(size_text, 16)
            if size == 0:
                for _ in range(MAX_TRAILERS + 1):
                    if self._readline(MAX_CHUNK_LINE, "the trailers") in (b"\r\n", b"\n"):
                        return b"".join(chunks)
                self._body_read = True
                raise IncompleteRequestError(f"malformed chunked body: more than {MAX_TRAILERS} trailer lines")
            total += size
            if total > limit:
                self._body_read = True  # the rest cannot be skipped cheaply: the connection closes
                raise RequestTooLargeError(f"request body is more than the limit of {limit} bytes")
            chunks.append(self._read_exactly(size, "a chunk"))
            if self._read_exactly(2, "a chunk") != b"\r\n":
                self._body_read = True
                raise IncompleteRequestError("malformed chunked body: chunk data not followed by CRLF")

    def _inputs(self, body):
        declared = self.headers.get_content_type()
        if declared == "application/json" or declared.endswith("+json"):
            return _parse_json(body)
        if body.lstrip()[:1] == b"{":  # sniff: no image format starts with "{"
            try:
                parsed = _parse_json(body)
            except InvalidJSONError:
                return body
            if isinstance(parsed, dict):
                return parsed
        return body

    def _drain(self):
        """Read and drop an unread request body (refused before it was read, e.g. 404, 413), so
        that closing the connection after the answer does not reset it before the client reads
        the answer. Bounded by DRAIN_LIMIT and by the request's deadline."""
        if self._body_read or self._expired:
            return
        self._body_read = True
        if self.headers.get("Expect", "").strip().lower() == "100-continue":
            return  # no 100 was sent: the client waits for this answer instead of sending the body
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if len(values) != 1 or not re.fullmatch(r"[0-9]{1,18}", next(iter(values))):
            return
        n = int(values.pop())
        if n > DRAIN_LIMIT:
            return
        while n > 0:
            try:
                data = self.rfile.read(min(n, 1 << 20))
            except OSError:
                return
            if not data:
                return
            n -= len(data)

    # -- the response -----------------------------------------------------------------------------

    def _finish(self, status, payload, headers, start):
        # Always a status line and headers, even to an HTTP/0.9-style request line ("GET /").
        self.request_version = "HTTP/1.0"
        try:
            self._drain()
        except OSError:
            pass
        self._request_read()
        try:
            body = json.dumps(payload, allow_nan=False).encode()
        except ValueError as e:  # never an empty reply: contract.predict refuses non-finite outputs
            status, headers = 500, []
            body = json.dumps(envelope(error=_internal_error(e))).encode()
            self.server.log(f"internal error on {self.command} {self._log_path()}: answer not JSON: {e}")
        try:
            self.send_response_only(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # the client went away: nothing to answer
            pass
        self.close_connection = True
        ms = (time.perf_counter() - start) * 1000
        self.server.log(f"{self.command or '-'} {self._log_path()} {status} {ms:.1f}ms")

    def send_error(self, code, message=None, explain=None):
        """Requests the base class refuses before a handler runs (malformed request line, 414,
        headers too long or too many 431, unsupported HTTP version 505) also get the envelope
        and a log line."""
        code = int(code)
        err = IncompleteRequestError(f"malformed request: {message or code}")
        err.status = code
        self._body_read = True
        self.command = self.command or "-"
        self.request_version = "HTTP/1.0"  # answer with a status line and headers, never HTTP/0.9-style
        self._finish(code, envelope(error=err), [], time.perf_counter())

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass  # one line per request is written by _finish

    def _log_path(self):
        path = getattr(self, "path", "") or getattr(self, "requestline", "") or "-"  # malformed: the raw line
        path = "".join(c if c.isprintable() and c != " " else "?" for c in path)
        return path if len(path) <= 200 else path[:197] + "..."


def _internal_error(e):
    err = RefimplError(f"internal error: {type(e).__name__}: {str(e)[:200]}")
    err.code, err.status = INTERNAL_ERROR_CODE, 500
    return err


def _parse_json(body):
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidJSONError(f"request body is not valid JSON: {str(e)[:200]}") from None


class ContractServer(ThreadingHTTPServer):
    """The hosted API's route on a ThreadingHTTPServer.

    token: require `Authorization: Bearer <token>` (None: open). max_body: bytes (413 above).
    weights: {model name (any alias): folder or repo id} for the models (default: run()'s default,
    the environment variables, then the official repos). revision, dtype, path: as for run().
    concurrency: how many requests may run a model at once (others wait; default 1: numpy's
    BLAS already uses every core, and two forward passes at once were 1.2-4x slower in total than
    one after the other on the 2-core machine this was written on). log: a callable taking one
    line (default: stderr). request_timeout: seconds a client has to send its whole request (request
    line, headers and body), else 408 and the connection is closed (default 30).

    stop() stops accepting, answers every connection still sending its request at once with 408
    (code 3008, "Aborted") and closes it, and waits for the requests being answered (inference in
    flight) to finish: it returns after the slowest in-flight inference plus the time to write its
    answer (each write bounded by request_timeout + 5 s), never waiting on a stalled client.
    """

    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address=("127.0.0.1", 8787), token=None, max_body=DEFAULT_MAX_BODY, weights=None,
                 revision=None, dtype="float32", concurrency=1, log=None, path="fast",
                 request_timeout=DEFAULT_REQUEST_TIMEOUT):
        if max_body < 1:
            raise ValueError(f"max_body must be at least 1 byte, got {max_body}")
        if not 0 < request_timeout < float("inf"):
            raise ValueError(f"request_timeout must be a positive number of seconds, got {request_timeout}")
        self.request_timeout = float(request_timeout)
        self._handlers = set()  # connections being served (stop() aborts those still reading)
        self._handlers_lock = threading.Lock()
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.token = token or None
        self.max_body = int(max_body)
        self.weights = {registry.get(k).name: v for k, v in (weights or {}).items() if v}
        self.revision = revision
        self.dtype = dtype
        self.path = check_path(path)
        self.model_slots = threading.BoundedSemaphore(concurrency)
        self._log = log or _stderr_log
        super().__init__(address, ContractHandler)

    @property
    def url(self):
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def route(self, model, account_id="local"):
        """The full URL of `model`'s route on this server."""
        return f"{self.url}/client/v4/accounts/{account_id}/ai/run/{model}"

    def loading_options(self, model):
        spec = registry.get(model)
        return {"weights": self.weights.get(spec.name), "revision": self.revision, "dtype": self.dtype, "path": self.path}

    def preload(self, models):
        """Load `models` now (so the first request is not slow, and missing weights show at start)."""
        for model in models:
            contract.get_model(model, **self.loading_options(model))

    def log(self, line):
        self._log(line)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        self.log(f"connection from {client_address[0]} failed: {type(exc).__name__}: {exc}")

    def track(self, handler, active):
        with self._handlers_lock:
            (self._handlers.add if active else self._handlers.discard)(handler)

    def start(self):
        """Serve in a background thread (tests, embedding). Returns self; stop with stop()."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="refimpl-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop accepting, abort connections still sending their request (408), wait for the
        requests in flight to be answered, close the socket."""
        self.shutdown()
        with self._handlers_lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler.expire("shutdown")
        self.server_close()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join()


_log_lock = threading.Lock()


def _stderr_log(line):
    with _log_lock:
        sys.stderr.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + line + "\n")
        sys.stderr.flush()


def serve(host="127.0.0.1", port=8787, preload=(), **options):
    """Run a ContractServer until SIGINT or SIGTERM, then shut down cleanly. Returns 0.

    options: ContractServer's keyword arguments.
    """
    server = ContractServer((host, port), **options)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if preload:
            server.preload(preload)
        access = "Authorization: Bearer token required" if server.token else "open (no token)"
        server.log(f"refimpl serve: listening on {server.url}, POST {ROUTE_TEMPLATE}; {access}; "
                   f"max body {server.max_body} bytes; request timeout {server.request_timeout:g} s")
        if not server.token and host not in LOOPBACK:
            server.log(f"refimpl serve: warning: no --token and bound to {host}: anyone who can reach "
                       "this address can use the server")
        server.start()
        while not stop.wait(0.5):
            pass
        server.log("refimpl serve: shutting down (finishing inference in flight; clients still "
                   "sending get 408)")
        server.stop()
        server.log("refimpl serve: stopped")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if getattr(server, "_thread", None) is None:
            server.server_close()
    return 0
