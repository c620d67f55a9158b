"""refimpl serve: the hosted API's REST route, locally, with the numpy reference behind it.

    POST /client/v4/accounts/{account_id}/ai/run/{model}
    curl http://127.0.0.1:8787/client/v4/accounts/local/ai/run/@cf/microsoft/resnet-50 \\
        -X POST --data-binary @examples/cat.png

Answers with the hosted API's envelope {"result", "success", "errors", "messages"}. Output shape
options go in the query string: ?top_k=3, ?labels=raw (ResNet-50); ?shape=hosted, ?threshold=0.7,
?threshold=none, ?shape=hosted&wrap_uint16=1 (DETR). A client has --request-timeout seconds to
send its whole request (then 408). Stops cleanly on SIGINT and SIGTERM: clients still sending get
408 at once, inference in flight finishes.
"""

import os

from refimpl.serving.server import DEFAULT_MAX_BODY, DEFAULT_REQUEST_TIMEOUT

from .common import add_path_option, model_weights

TOKEN_ENV = "REFIMPL_SERVE_TOKEN"


def register(sub):
    p = sub.add_parser("serve", help="serve the hosted API's REST route locally (both models)", description=__doc__,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: loopback only; other addresses warn without --token)")
    p.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 picks a free one)")
    p.add_argument("--token", default=None,
                   help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV}, else open)")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                   help=f"largest request body accepted; larger gets 413 (default {DEFAULT_MAX_BODY}, 10 MiB)")
    p.add_argument("--request-timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT, metavar="SECONDS",
                   help="time a client has to send its whole request (line, headers, body); then 408 and "
                   f"the connection closes (default {DEFAULT_REQUEST_TIMEOUT:g})")
    p.add_argument("--weights", action="append", default=[], metavar="MODEL=DIR_OR_REPO",
                   help="the checkpoint of MODEL (any alias; repeatable), e.g. resnet-50=weights/resnet-50 "
                   "(default: $REFIMPL_RESNET50_WEIGHTS / $REFIMPL_DETR_WEIGHTS, else the official repo)")
    p.add_argument("--revision", default=None, help="hub revision to pin for repo ids (default: main)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="compute precision")
    p.add_argument("--concurrency", type=int, default=1, metavar="N",
                   help="requests running a model at once; others wait (default 1: BLAS already uses "
                   "every core, and concurrent forward passes contend)")
    add_path_option(p, "fast")
    p.add_argument("--preload", action="append", default=[], metavar="MODEL",
                   help="load MODEL at start instead of on first use (repeatable; 'all' for both)")
    p.set_defaults(func=run)


def run(args):
    from refimpl import registry
    from refimpl.serving.server import serve

    preload = []
    for name in args.preload:
        preload += [s.hosted_name for s in registry.HOSTED] if name == "all" else [registry.get(name).hosted_name]
    weights = model_weights(args.weights)
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if not 0 < args.request_timeout < float("inf"):
        raise ValueError(f"--request-timeout must be a positive number of seconds, got {args.request_timeout}")
    if args.max_body < 1:
        raise ValueError(f"--max-body must be at least 1 byte, got {args.max_body}")
    return serve(args.host, args.port, preload=preload, token=token, max_body=args.max_body,
                 weights=weights, request_timeout=args.request_timeout,
                 revision=args.revision, dtype=args.dtype, concurrency=args.concurrency, path=args.path)
