"""The results file that audit-dir and evaluate share: JSON lines, appended to and resumed, and
never written into when it is not recognisably the tool's own.

    >>> from refimpl.audit.results import open_results, Appender
    >>> earlier = open_results("results.jsonl", model="resnet-50")   # [] for a new file
    >>> with Appender("results.jsonl") as f:
    ...     f.write({"image": "a.jpg", "model": "resnet-50", "status": "AGREE", "exit_code": 0})
"""

import json
from pathlib import Path

from refimpl.audit.judge.verdict import json_default
from refimpl.errors import ResultsFileError


def is_audit_record(rec):
    """An audit-dir record: what `_audit_one` writes (older files included)."""
    return (isinstance(rec.get("image"), str) and isinstance(rec.get("model"), str)
            and isinstance(rec.get("status"), str) and isinstance(rec.get("exit_code"), int) and "record" not in rec)


def read_records(path, model=None, recognise=is_audit_record, tool="audit-dir"):
    """The records of an earlier run in the results file `path` ([] when it is new or empty).

    A results file is appended to only when it is recognisably this tool's own results for this
    model: every line a JSON record `recognise` accepts, with `"model": model` (when given).
    Anything else raises ResultsFileError naming the file and the first offending line, and the
    file is left exactly as it was: audit-dir never writes into a file it did not write.

    One exception is made for an interruption: a last line without its newline that begins like
    a record (`{`) is the record being written when the run was killed; it is cut off (the file
    is truncated to the last complete record), so the next record starts on a fresh line and
    that image is done again. A complete file is only read, so it may be read-only."""
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise ResultsFileError(f"results file {path} is not a regular file")
    data = path.read_bytes()
    records, good_end, pos = [], 0, 0
    lines = data.splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        pos += len(line)
        torn = number == len(lines) and not line.endswith(b"\n")
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if torn and line.lstrip().startswith(b"{") and (records or number == 1):
            break  # the record being written when the run stopped: redone below
        if not isinstance(rec, dict) or not recognise(rec):
            shown = line[:80].decode("utf-8", "replace").rstrip("\n")
            raise ResultsFileError(
                f"{path} line {number} is not an {tool} record ({shown!r}): refusing to write to a file that is "
                f"not recognisably {tool}'s own results; it was left untouched (pass another --out)")
        if model is not None and rec["model"] != model:
            raise ResultsFileError(
                f"{path} holds results for {rec['model']} (line {number}), not {model}: refusing to mix them; "
                "it was left untouched (pass another --out, or --restart to replace them)")
        records.append(rec)
        good_end = pos
    if good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return records


def open_results(out, model, restart=False, recognise=is_audit_record, tool="audit-dir"):
    """Check the results file `out` (see `read_records`) and return its earlier records;
    `restart` empties it first, but only once it is known to be this tool's own file for any model."""
    if restart:
        read_records(out, None, recognise, tool)  # refuses a file that is not ours
        if Path(out).exists():
            Path(out).write_bytes(b"")
        return []
    return read_records(out, model, recognise, tool)


class Appender:
    """Appends JSON lines to a results file, opening it on the first line only (so a complete,
    read-only results file can be resumed: there is nothing to write). Each line is written
    whole and flushed, so a kill loses at most the line being written."""

    def __init__(self, path):
        self.path, self.file = Path(path), None

    def write(self, rec):
        if self.file is None:
            self.file = open(self.path, "a", encoding="utf-8")
        self.file.write(json.dumps(rec, sort_keys=True, allow_nan=False, default=json_default) + "\n")
        self.file.flush()

    def close(self):
        if self.file is not None:
            self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
