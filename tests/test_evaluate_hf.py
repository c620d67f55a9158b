"""refimpl evaluate on Hugging Face `datasets` inputs: a save_to_disk folder and an imagefolder, built
by `datasets` itself from a synthesized dataset, give the records of the folder run (the same
images, labels and batches); the columns are found by feature type; a hub name that cannot be
reached (offline here) is a clear typed error."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refimpl.errors import DatasetError
from refimpl.evaluation import evaluate
from refimpl.synth.datasets import make_classification

datasets = pytest.importorskip("datasets", reason="pip install 'refimpl[evaluate]' for Hugging Face datasets")
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, resnet50_small_dir):
    data = tmp_path_factory.mktemp("hf-source") / "data"
    make_classification(data, weights=str(resnet50_small_dir), n=12, seed=6)
    out = data.parent / "folder.jsonl"
    report = evaluate(data, "resnet-50", out=out, workers=1, progress=False, weights=str(resnet50_small_dir))
    return data, report


def records(path):
    return sorted((json.loads(line) for line in Path(path).read_text().splitlines()), key=lambda r: r["image"])


def without_name(recs):
    return [{k: v for k, v in r.items() if k != "image"} for r in recs]


@pytest.mark.slow
def test_a_save_to_disk_dataset_gives_the_records_of_the_folder(folder_run, resnet50_small_dir, tmp_path):
    data, folder_report = folder_run
    images = sorted(data.glob("*/*.png"))  # the folder run's order (by name)
    classes = sorted({p.parent.name for p in images})
    # unusual column names: found by feature type; the images embedded as bytes
    features = datasets.Features({"picture": datasets.Image(), "synset": datasets.ClassLabel(names=classes),
                                  "note": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"picture": [{"bytes": p.read_bytes(), "path": p.name} for p in images],
                                     "synset": [classes.index(p.parent.name) for p in images],
                                     "note": ["x"] * len(images)}, features=features)
    ds.save_to_disk(str(tmp_path / "saved"))
    out = tmp_path / "saved.jsonl"
    report = evaluate(tmp_path / "saved", "resnet-50", out=out, workers=2, progress=False, weights=str(resnet50_small_dir))
    got, expected = records(out), records(folder_report["out"])
    assert [r["image"] for r in got] == [f"{i:06d}/{p.name}" for i, p in enumerate(images)]
    assert without_name(got) == without_name(expected)  # row i is the folder's image i: the same record
    assert report["metrics"] == folder_report["metrics"]


@pytest.mark.slow
def test_an_imagefolder_gives_the_records_of_the_folder(folder_run, resnet50_small_dir, tmp_path):
    data, folder_report = folder_run
    out = tmp_path / "imagefolder.jsonl"
    report = evaluate(data, "resnet-50", out=out, workers=1, progress=False, weights=str(resnet50_small_dir),
                      hf_format="imagefolder")
    assert records(out) == records(folder_report["out"])  # names too: the paths relative to the folder
    assert report["metrics"] == folder_report["metrics"]


def test_ambiguous_columns_and_an_unreachable_hub_are_typed_errors(resnet50_small_dir, tmp_path):
    png = (ROOT / "examples" / "cat.png").read_bytes()
    ds = datasets.Dataset.from_dict({"a": [{"bytes": png, "path": "a.png"}], "b": [{"bytes": png, "path": "b.png"}],
                                     "label": [0]},
                                    features=datasets.Features({"a": datasets.Image(), "b": datasets.Image(),
                                                                "label": datasets.ClassLabel(names=["tench, Tinca tinca"])}))
    ds.save_to_disk(str(tmp_path / "two"))
    with pytest.raises(DatasetError, match="2 Image column.*--image-column"):
        evaluate(tmp_path / "two", "resnet-50", out=tmp_path / "x.jsonl", progress=False, weights=str(resnet50_small_dir))
    report = evaluate(tmp_path / "two", "resnet-50", out=tmp_path / "x.jsonl", progress=False,
                      weights=str(resnet50_small_dir), image_column="b", workers=1)
    assert report["n_images"] == 1 and records(report["out"])[0]["label"] == 0  # by name, as imagenet-1k on the hub spells it
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "refimpl", "evaluate", "someone/imagenet-val-copy", "--weights",
                           str(resnet50_small_dir), "--split", "validation", "--out", str(tmp_path / "hub.jsonl"),
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "DatasetError: cannot load the Hugging Face dataset 'someone/imagenet-val-copy' (hub)" in done.stderr
    assert "Traceback" not in done.stderr
