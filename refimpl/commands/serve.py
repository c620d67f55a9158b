"""refimpl serve: the hosted API's REST route, locally, with the numpy reference behind it.

    POST /client/v4/accounts/{account_id}/ai/run/{model}
    curl http://127.0.0.1:8787/client/v4/accounts/local/ai/run/@cf/microsoft/resnet-50 \\
        -X POST --data-binary @examples/cat.png

Answers with the hosted API's envelope {"result", "success", "errors", "messages"}. Output shape
options go in the query string: ?top_k=3, ?labels=raw (ResNet-50); ?shape=hosted, ?threshold=0.7,
?threshold=none, ?shape=hosted&wrap_uint16=1 (DETR). Stops cleanly on SIGINT and SIGTERM.
"""

import os

from ..server import DEFAULT_MAX_BODY

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
    p.add_argument("--resnet50-weights", metavar="DIR_OR_REPO",
                   help="ResNet-50 checkpoint (default: $REFIMPL_RESNET50_WEIGHTS, else microsoft/resnet-50)")
    p.add_argument("--detr-weights", metavar="DIR_OR_REPO",
                   help="DETR checkpoint (default: $REFIMPL_DETR_WEIGHTS, else facebook/detr-resnet-50)")
    p.add_argument("--revision", default="main", help="hub revision to pin for repo ids (default: main)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="compute precision")
    p.add_argument("--concurrency", type=int, default=1, metavar="N",
                   help="requests running a model at once; others wait (default 1: BLAS already uses "
                   "every core, and concurrent forward passes contend)")
    p.add_argument("--preload", action="append", default=[], metavar="MODEL",
                   help="load MODEL at start instead of on first use (repeatable; 'all' for both)")
    p.set_defaults(func=run)


def run(args):
    from .. import contract
    from ..server import serve

    preload = []
    for name in args.preload:
        preload += list(contract.HOSTED_NAME.values()) if name == "all" else [contract.hosted_name(name)]
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    return serve(args.host, args.port, preload=preload, token=token, max_body=args.max_body,
                 weights={"resnet-50": args.resnet50_weights, "detr-resnet-50": args.detr_weights},
                 revision=args.revision, dtype=args.dtype, concurrency=args.concurrency)
