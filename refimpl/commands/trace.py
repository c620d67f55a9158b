"""refimpl trace IMAGE: run the whole pipeline and save every named intermediate (a trace)."""

import json

from .common import add_model_options, print_json


def register(sub):
    p = sub.add_parser("trace", help="save every intermediate tensor of one run (for layer-by-layer comparison)",
                       description=__doc__ + "\n\nOUT ending in .safetensors: one safetensors file with JSON "
                       "metadata (refimpl version, model, weights and input SHA-256, dtype, preprocessing, "
                       "numpy/BLAS, data-flow order, final output); any other OUT: a folder of <module.path>.npy "
                       "files plus trace.json.")
    p.add_argument("image", help="image file")
    # The reference by default: a trace is what other implementations are compared with, layer by
    # layer, and the reference code is the one the tests hold against transformers.
    add_model_options(p, "reference")
    p.add_argument("--out", required=True, help="trace.safetensors, or a folder for .npy files")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON instead of a summary")
    p.set_defaults(func=run)


def run(args):
    from refimpl.conformance.compare import save_npy_folder
    from refimpl.conformance.trace import save_trace, trace

    tensors, metadata = trace(args.image, args.model.name, args.weights, args.revision, args.dtype, args.path)
    if str(args.out).endswith(".safetensors"):
        save_trace(args.out, tensors, metadata)
    else:
        save_npy_folder(args.out, tensors, metadata)
    if args.json:
        print_json(metadata)
        return 0
    size = sum(t.nbytes for t in tensors.values())
    names = list(tensors)
    print(f"wrote {len(tensors)} tensors ({size / 1e6:.1f} MB) to {args.out}")
    print(f"model {metadata['model']} ({metadata['hosted_model']}), {metadata['path']} path, dtype {metadata['dtype']}, "
          f"weights sha256 {metadata['weights']['sha256'][:16]}..., input sha256 {metadata['input']['sha256'][:16]}...")
    print(f"data-flow order: {names[0]}, {names[1]}, {names[2]}, ..., {names[-1]}")
    print("output: " + json.dumps(metadata["output"]))
    return 0
