"""refimpl audit-dir DIR: audit every image of a folder against its claimed response (NAME.json
beside NAME.jpg; images without one get the reference output recorded).

Writes one JSON line per image to --out (default DIR/audit.jsonl) as it goes, shows a progress
bar on stderr, and resumes where it stopped: a rerun skips the images already recorded
(--restart starts over). --out must be new, empty or audit-dir's own results for this model:
anything else is refused untouched. Prints a summary of every recorded image with dataset
statistics (top-1 and top-5-set agreement, score differences, rank correlation, confusion,
counts per signature; detection: the claimed detections' AP with refimpl's as ground truth, and
with --annotations both services' AP), and the coverage (claimed rows judged, of how many;
claims INCOMPLETE). Exit status: 0 when every claim agrees (or is explained by --accept'ed
signatures), 3 when the only failures are INCOMPLETE claims (too little judged), 1 otherwise, 2
on usage errors, 130 when interrupted (rerun to resume)."""

import argparse

from .common import add_judging_options, add_model_options, judging_options, print_json


def register(sub):
    p = sub.add_parser("audit-dir", help="audit a folder of images and claimed responses (JSONL, resumable)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="DIR", help="folder of images, with NAME.json beside NAME.jpg")
    add_model_options(p, "fast")
    add_judging_options(p)
    p.add_argument("--out", metavar="RESULTS.jsonl", help="results file (default DIR/audit.jsonl)")
    p.add_argument("--annotations", metavar="ANN.json",
                   help="COCO instances file of the images (detection): both services' AP against it")
    p.add_argument("--restart", action="store_true", help="discard earlier results and audit everything again")
    p.add_argument("--limit", type=int, metavar="N", help="audit at most N more images in this run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal anyway)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--report", metavar="OUT.html", help="also write a self-contained HTML report of the summary")
    p.set_defaults(func=run)


def run(args):
    from refimpl.audit.folder import audit_dir, format_summary

    tol, accept = judging_options(args)
    if args.limit is not None and args.limit < 0:
        raise ValueError("--limit must be >= 0")
    summary = audit_dir(args.folder, args.model.name, args.out, tol, accept, restart=args.restart, limit=args.limit,
                        progress=not args.no_progress, weights=args.weights, revision=args.revision,
                        dtype=args.dtype, path=args.path, annotations=args.annotations)
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    if args.report:
        import sys

        from refimpl.reports import html as report_html

        report_html.write(args.report, report_html.render_audit_dir(summary))
        print(f"report: {args.report}", file=sys.stderr)
    return summary["exit_code"]
