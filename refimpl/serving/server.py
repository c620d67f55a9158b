"""A local, compatible endpoint of the hosted API: `refimpl serve`.

One route, the hosted API's:

    POST /client/v4/accounts/{account_id}/ai/run/{model}     model: @cf/microsoft/resnet-50, ...

The body is the raw image bytes (any content type but JSON: what `curl --data-binary @cat.png`
sends) or a JSON object per the input schema, `{"image": [...]}`. A body is JSON when its
Content-Type is application/json (or *+json), or when it starts with `{` and parses as a JSON
object (no image format starts with `{`). Every answer is the hosted API's envelope:

    {"result": <output>, "success": true, "errors": [], "messages": []}
    {"result": null, "success": false, "errors": [{"code": 5004, "message": "..."}], "messages": []}

Statuses: 200 success; 400 bad input (5004 invalid data, 3003 empty or malformed body); 401
missing or wrong `Authorization: Bearer` when the server has a token (10000); 404 unknown model
(3042) or unknown route (7000); 405 a method other than POST on the route (7001); 413 body larger
than `max_body` (3006); 500 weights cannot be loaded (5007) or an internal error (3000).

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
import signal
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
    RequestTooLargeError,
    RouteNotFoundError,
)

ROUTE_PREFIX = "/client/v4/accounts/"
ROUTE_TEMPLATE = "/client/v4/accounts/{account_id}/ai/run/{model}"
DEFAULT_MAX_BODY = 10 * 1024 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024  # unread bodies up to this size are read and dropped before answering
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
    server_version = "refimpl-serve"
    protocol_version = "HTTP/1.0"
    timeout = 30  # seconds a client may stall mid-request before the connection is dropped

    # Every method goes through _handle: POST answers, others get 405 on the route, 404 elsewhere.
    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def do_POST(self):
        self._handle()

    # -- the request ------------------------------------------------------------------------------

    def _handle(self):
        start = time.perf_counter()
        self._body_read = False
        headers = []
        try:
            status, payload = 200, envelope(self._answer())
        except _Refusal as r:
            status, payload, headers = r.error.status, envelope(error=r.error), r.headers
        except RefimplError as e:
            status, payload = e.status, envelope(error=e)
        except Exception as e:  # noqa: BLE001 - never die on input: answer 500 and keep serving
            err = RefimplError(f"internal error: {type(e).__name__}: {e}")
            err.code, err.status = INTERNAL_ERROR_CODE, 500
            status, payload = 500, envelope(error=err)
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
        body = self._read_body()
        model = route[1]
        registry.get(model)  # 404 for unknown models, before looking at the body
        try:
            query = dict(parse_qsl(url.query, keep_blank_values=True, strict_parsing=False))
        except ValueError as e:
            raise InvalidOptionError(f"malformed query string: {e}") from None
        options = contract.parse_query_options(model, query)
        inputs = self._inputs(body)
        with self.server.model_slots:
            return contract.run(model, inputs, **options, **self.server.loading_options(model))

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

    def _read_body(self):
        limit = self.server.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = self._read_chunked(limit)
        else:
            length = self.headers.get("Content-Length")
            if length is None:
                self._body_read = True
                raise IncompleteRequestError("request has no body: send the image bytes "
                                             "(curl --data-binary @image.png) or {\"image\": [...]}")
            try:
                n = int(length)
                if n < 0:
                    raise ValueError
            except ValueError:
                self._body_read = True  # nothing sensible to drain
                raise IncompleteRequestError(f"malformed Content-Length: {length[:40]!r}") from None
            if n > limit:
                raise RequestTooLargeError(f"request body is {n} bytes, more than the limit of {limit} bytes")
            body = self.rfile.read(n)
            self._body_read = True
            if len(body) < n:
                raise IncompleteRequestError(f"request body ended after {len(body)} of {n} bytes")
        if not body:
            raise IncompleteRequestError("request body is empty: send the image bytes "
                                         "(curl --data-binary @image.png) or {\"image\": [...]}")
        return body

    def _read_chunked(self, limit):
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self._body_read = True
                raise IncompleteRequestError("malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._body_read = True
                return b"".join(chunks)
            total += size
            if total > limit:
                self._body_read = True  # the rest cannot be skipped cheaply: the connection closes
                raise RequestTooLargeError(f"request body is more than the limit of {limit} bytes")
            data = self.rfile.read(size)
            self.rfile.readline(1024)
            if len(data) < size:
                self._body_read = True
                raise IncompleteRequestError("chunked body ended early")
            chunks.append(data)

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
        """Read and drop an unread request body, so that closing the connection after the
        answer does not reset it before the client reads the answer."""
        if self._body_read:
            return
        self._body_read = True
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return
        if n > DRAIN_LIMIT:
            return
        while n > 0:
            data = self.rfile.read(min(n, 1 << 20))
            if not data:
                return
            n -= len(data)

    # -- the response -----------------------------------------------------------------------------

    def _finish(self, status, payload, headers, start):
        try:
            self._drain()
        except OSError:
            pass
        body = json.dumps(payload, allow_nan=False).encode()
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
        self.server.log(f"{self.command} {self._log_path()} {status} {ms:.1f}ms")

    def send_error(self, code, message=None, explain=None):
        """Requests the base class refuses before a handler runs (malformed request line,
        headers too long, ...) also get the envelope and a log line."""
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
    line (default: stderr).
    """

    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address=("127.0.0.1", 8787), token=None, max_body=DEFAULT_MAX_BODY, weights=None,
                 revision=None, dtype="float32", concurrency=1, log=None, path="fast"):
        if max_body < 1:
            raise ValueError(f"max_body must be at least 1 byte, got {max_body}")
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

    def start(self):
        """Serve in a background thread (tests, embedding). Returns self; stop with stop()."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="refimpl-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop accepting, wait for requests in flight, close the socket."""
        self.shutdown()
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
                   f"max body {server.max_body} bytes")
        if not server.token and host not in LOOPBACK:
            server.log(f"refimpl serve: warning: no --token and bound to {host}: anyone who can reach "
                       "this address can use the server")
        server.start()
        while not stop.wait(0.5):
            pass
        server.log("refimpl serve: shutting down (waiting for requests in flight)")
        server.stop()
        server.log("refimpl serve: stopped")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if getattr(server, "_thread", None) is None:
            server.server_close()
    return 0
