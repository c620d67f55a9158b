"""refimpl golden --out DIR [IMAGES...]: export a golden test set (inputs, every intermediate, final
outputs, manifest.json with tolerances and SHA-256 hashes, README.md explaining how another
implementation checks itself). Deterministic: the same inputs give byte-identical files."""

import sys
from pathlib import Path

from .common import add_model_options


def register(sub):
    p = sub.add_parser("golden", help="export a golden test set (every intermediate, with manifest and README)",
                       description=__doc__)
    p.add_argument("images", nargs="*", help="image files (default: two small synthetic images)")
    add_model_options(p, "reference")  # golden vectors come from the code held against transformers
    p.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    p.add_argument("--format", choices=["npy", "safetensors"], default="npy",
                   help="npy: one <module.path>.npy per tensor (default); safetensors: one trace file per case")
    p.add_argument("--overwrite", action="store_true", help="replace an existing golden set in --out")
    p.set_defaults(func=run)


def run(args):
    from tqdm import tqdm

    from refimpl.conformance.golden import export

    # A progress bar on a terminal only (tqdm); quiet in logs and pipes.
    bar = tqdm(total=len(args.images) or 2, unit="case", file=sys.stderr, disable=not sys.stderr.isatty())

    def progress(i, n, case):
        bar.set_postfix_str(case, refresh=False)
        bar.update(1)

    try:
        manifest = export(args.out, args.model.name, args.images or None, args.weights, args.revision, args.dtype,
                          format=args.format, overwrite=args.overwrite, progress=progress, path=args.path)
    finally:
        bar.close()
    n_tensors = sum(len(c["tensors"]) for c in manifest["cases"])
    print(f"wrote a golden set for {manifest['model']} ({manifest['dtype']}, {manifest['path']} path) to {args.out}: "
          f"{len(manifest['cases'])} case(s), {n_tensors} tensors")
    for c in manifest["cases"]:
        print(f"  {c['name']}: {c['input'].get('name', '')} -> {len(c['tensors'])} tensors, "
              f"output {len(c['output'])} item(s)")
    out = Path(args.out)
    print(f"see {out / 'README.md'}; check an implementation with: refimpl compare YOUR_DUMP/ "
          f"{out / manifest['cases'][0]['name']}/")
    return 0
