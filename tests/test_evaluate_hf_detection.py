"""refimpl evaluate on Hugging Face object-detection datasets: a save_to_disk dataset and an
imagefolder (metadata.jsonl with `objects`), built by `datasets` itself from a synthesized COCO
folder and its annotation file, give the folder + --annotations run's detections and metrics;
the in-memory ground truth is the annotation file's; datasets without boxes, with malformed boxes
or with categories that have no names are typed errors, never a traceback."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from refimpl.errors import DatasetError
from refimpl.evaluation import data as evaluation_data
from refimpl.evaluation import evaluate
from refimpl.synth.datasets import make_detection

datasets = pytest.importorskip("datasets", reason="pip install 'refimpl[evaluate]' for Hugging Face datasets")
ROOT = Path(__file__).parent.parent
CAT = ROOT / "examples" / "cat.png"
KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")


def records(path):
    return sorted((json.loads(line) for line in Path(path).read_text().splitlines()), key=lambda r: r["image"])


def assert_same_metrics(got, expected):
    for key in KEYS:
        assert (got[key] is None) == (expected[key] is None), key
        assert got[key] is None or abs(got[key] - expected[key]) <= 1e-12, (key, got[key], expected[key])


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory, detr_small_dirs):
    """The synthesized COCO folder, its annotation file, and the folder + --annotations run."""
    folder = tmp_path_factory.mktemp("hf-det-source")
    make_detection(folder, weights=str(detr_small_dirs["timm"]), n=6, seed=0)
    coco = json.loads((folder / "instances.json").read_text())
    report = evaluate(folder / "images", "detr", annotations=folder / "instances.json", out=folder / "folder.jsonl",
                      workers=1, progress=False, weights=str(detr_small_dirs["timm"]))
    assert 0 < report["metrics"]["AP"] < 1, report["metrics"]  # a ground truth the detections do not simply match
    return folder, coco, report


def objects_by_image(coco):
    by_image = {image["id"]: [] for image in coco["images"]}
    for a in coco["annotations"]:
        by_image[a["image_id"]].append(a)
    return by_image


@pytest.mark.slow  # builds a DETR dataset and evaluates it three times (minutes on a loaded machine)
def test_a_save_to_disk_dataset_gives_the_folder_runs_detections_and_metrics(coco_run, detr_small_dirs, tmp_path):
    folder, coco, folder_report = coco_run
    names = {c["id"]: c["name"] for c in coco["categories"]}
    classes = [names[i] for i in sorted(names)]  # every category, as a ClassLabel (index != category id)
    images = sorted(coco["images"], key=lambda image: image["file_name"])  # the folder run's order
    by_image = objects_by_image(coco)
    # the image under an unusual name, the objects column found by its bbox field; area and iscrowd given
    features = datasets.Features({
        "picture": datasets.Image(), "image_id": datasets.Value("int64"), "note": datasets.Value("string"),
        "annotations": datasets.Sequence({"bbox": datasets.Sequence(datasets.Value("float64"), length=4),
                                          "category": datasets.ClassLabel(names=classes),
                                          "area": datasets.Value("float64"), "iscrowd": datasets.Value("int64")})})
    rows = {"picture": [], "image_id": [], "note": [], "annotations": []}
    for image in images:
        path = folder / "images" / image["file_name"]
        objects = by_image[image["id"]]
        rows["picture"].append({"bytes": path.read_bytes(), "path": path.name})
        rows["image_id"].append(image["id"])
        rows["note"].append("x")
        rows["annotations"].append({"bbox": [a["bbox"] for a in objects],
                                    "category": [classes.index(names[a["category_id"]]) for a in objects],
                                    "area": [a["area"] for a in objects], "iscrowd": [a["iscrowd"] for a in objects]})
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "saved"))
    out = tmp_path / "saved.jsonl"
    report = evaluate(tmp_path / "saved", "detr", out=out, workers=2, progress=False, weights=str(detr_small_dirs["timm"]))
    got, expected = records(out), records(folder_report["out"])
    assert [r["image"] for r in got] == [f"{i:06d}/{image['file_name']}" for i, image in enumerate(images)]
    # row i is the folder's image i: the same image id and every query's detection, category ids included
    assert [{k: v for k, v in r.items() if k != "image"} for r in got] == \
           [{k: v for k, v in r.items() if k != "image"} for r in expected]
    assert all(len(r["detections"]) > 0 for r in got)
    assert_same_metrics(report["metrics"], folder_report["metrics"])
    assert report["n_images"] == folder_report["n_images"] == 6 and report["task"] == "object-detection"


@pytest.mark.slow  # builds a DETR dataset and evaluates it three times (minutes on a loaded machine)
def test_an_imagefolder_with_xyxy_boxes_and_category_names_gives_the_folder_runs_metrics(coco_run, detr_small_dirs, tmp_path):
    folder, coco, folder_report = coco_run
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image = objects_by_image(coco)
    data = tmp_path / "imagefolder"
    data.mkdir()
    # as the object-detection guide's imagefolder: boxes here as corners, categories by name, no
    # area, iscrowd or image id (area from the box, iscrowd 0, the id the row number + 1)
    with open(data / "metadata.jsonl", "w") as f:
        for image in coco["images"]:
            shutil.copy(folder / "images" / image["file_name"], data / image["file_name"])
            objects = by_image[image["id"]]
            f.write(json.dumps({"file_name": image["file_name"], "objects": {
                "bbox": [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in objects)],
                "category": [names[a["category_id"]] for a in objects]}}) + "\n")
    assert all(a["iscrowd"] == 0 for a in coco["annotations"])
    out = tmp_path / "imagefolder.jsonl"
    report = evaluate(data, "detr", out=out, workers=1, progress=False, weights=str(detr_small_dirs["timm"]),
                      bbox_format="xyxy")
    got, expected = records(out), records(folder_report["out"])
    assert [r["image"] for r in got] == [r["image"] for r in expected]  # the file names, as the folder run's
    # the categories are the names that occur: the detections of those, exactly the folder run's
    occurring = {a["category_id"] for a in coco["annotations"]}
    assert len(occurring) > 1
    for mine, theirs in zip(got, expected):
        assert mine["detections"] == [d for d in theirs["detections"] if d["category_id"] in occurring]
    assert_same_metrics(report["metrics"], folder_report["metrics"])
    # read as the default xywh, these corners reach past the images: refused, with the hint
    with pytest.raises(DatasetError, match="reach past their image.*--bbox-format xyxy"):
        evaluate(data, "detr", out=tmp_path / "wrong.jsonl", progress=False, weights=str(detr_small_dirs["timm"]))


@pytest.mark.slow  # loads the synthesized DETR in a subprocess
def test_a_dataset_without_boxes_and_an_unreachable_hub_are_typed_errors_on_the_command_line(detr_small_dirs, tmp_path):
    ds = datasets.Dataset.from_dict({"image": [{"bytes": CAT.read_bytes(), "path": "cat.png"}], "label": [0]},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "label": datasets.ClassLabel(names=["cat"])}))
    ds.save_to_disk(str(tmp_path / "classes"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    base = [sys.executable, "-m", "refimpl", "evaluate", "--model", "detr", "--weights", str(detr_small_dirs["timm"]),
            "--no-progress", "--out", str(tmp_path / "x.jsonl")]
    for data, expected in [(str(tmp_path / "classes"), "DatasetError: the dataset has no column(s) of objects with a 'bbox'"),
                           ("someone/coco-val-copy", "DatasetError: cannot load the Hugging Face dataset 'someone/coco-val-copy' (hub)")]:
        done = subprocess.run(base + [data], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


# --- the ground truth built from a dataset (no model needed) --------------------------------------

ID2LABEL = {0: "N/A", 1: "person", 17: "cat", 18: "dog"}


def saved(tmp_path, rows, objects_feature, extra=None):
    features = {"image": datasets.Image(), "objects": objects_feature, **(extra or {})}
    datasets.Dataset.from_dict(rows, features=datasets.Features(features)).save_to_disk(str(tmp_path / "ds"))
    return tmp_path / "ds"


def cat_rows(objects, **columns):
    return {"image": [{"bytes": CAT.read_bytes(), "path": "cat.png"} for _ in objects], "objects": objects, **columns}


def test_the_ground_truth_is_the_coco_dict_of_the_objects(tmp_path):
    width, height = Image.open(CAT).size
    # a list of dicts this time (datasets.List), categories a ClassLabel whose second name the model lacks
    feature = datasets.List({"bbox": datasets.List(datasets.Value("float32"), length=4),
                             "category": datasets.ClassLabel(names=["dog", "unicorn", "cat"])})
    objects = [[{"bbox": [1.0, 2.0, 11.0, 22.0], "category": 2}, {"bbox": [0.0, 0.0, 4.0, 4.0], "category": 1}],
               []]
    ds = saved(tmp_path, cat_rows(objects), feature)
    items, source, coco = evaluation_data.hf_detection_items(ds, ID2LABEL, "disk", bbox_format="xyxy")
    assert [(i.name, i.label, i.row) for i in items] == [("000000/cat.png", 1, 0), ("000001/cat.png", 2, 1)]
    assert source.image_column == "image" and source.format == "disk"
    assert coco["images"] == [{"id": 1, "file_name": "000000/cat.png", "width": width, "height": height},
                              {"id": 2, "file_name": "000001/cat.png", "width": width, "height": height}]
    # ids: the model's class index by name (COCO's for DETR), a name it lacks after its classes
    assert coco["categories"] == [{"id": 18, "name": "dog"}, {"id": 19, "name": "unicorn"}, {"id": 17, "name": "cat"}]
    assert coco["annotations"] == [
        {"id": 1, "image_id": 1, "category_id": 17, "bbox": [1.0, 2.0, 10.0, 20.0], "area": 200.0, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 19, "bbox": [0.0, 0.0, 4.0, 4.0], "area": 16.0, "iscrowd": 0}]
    assert evaluation_data.category_map(coco, ID2LABEL) == {"dog": 18, "cat": 17}


def test_malformed_detection_datasets_are_typed_errors(tmp_path):
    def fails(rows, feature, match, extra=None, **options):
        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        ds = saved(folder, rows, feature, extra)
        with pytest.raises(DatasetError, match=match):
            evaluation_data.hf_detection_items(ds, ID2LABEL, "disk", **options)

    boxes = datasets.Sequence(datasets.Value("float64"))
    named = datasets.Sequence({"bbox": boxes, "category": datasets.ClassLabel(names=["cat"])})
    fails(cat_rows([{"bbox": [[1, 2, 3]], "category": [0]}]), named, r"row 0 of .*object 0: the bbox \[1.0, 2.0, 3.0\] is not 4 numbers")
    fails(cat_rows([{"bbox": [[5, 5, 2, 9]], "category": [0]}]), named, "negative width or height .*--bbox-format xywh",
          bbox_format="xyxy")
    fails(cat_rows([{"bbox": [[1, 2, 3, 4]], "category": [0]}]), named, "unknown bbox format 'cxcywh'", bbox_format="cxcywh")
    numbered = datasets.Sequence({"bbox": boxes, "category": datasets.Value("int64")})
    fails(cat_rows([{"bbox": [[1, 2, 3, 4]], "category": [0]}]), numbered, "not a ClassLabel .*cannot be matched")
    no_category = datasets.Sequence({"bbox": boxes, "score": datasets.Value("float64")})
    fails(cat_rows([{"bbox": [[1, 2, 3, 4]], "score": [0.5]}]), no_category, "needs 'bbox' and a category")
    repeated = cat_rows([{"bbox": [], "category": []}, {"bbox": [], "category": []}], image_id=[7, 7])
    fails(repeated, named, "'image_id' is taken as the image id, but some ids are repeated",
          extra={"image_id": datasets.Value("int64")})
    crowd = datasets.Sequence({"bbox": boxes, "category": datasets.ClassLabel(names=["cat"]), "iscrowd": datasets.Value("int64")})
    fails(cat_rows([{"bbox": [[1, 2, 3, 4]], "category": [0], "iscrowd": [2]}]), crowd, "iscrowd 2 is not 0 or 1")
    fails(cat_rows([{"bbox": [[0.1, 0.2, 0.3, 0.4]], "category": [0]}]), named, "look normalised to the image size")
    # no objects column at all: a classification dataset
    folder = tmp_path / "classes"
    datasets.Dataset.from_dict({"image": [{"bytes": CAT.read_bytes(), "path": "cat.png"}], "label": [0]},
                               features=datasets.Features({"image": datasets.Image(),
                                                           "label": datasets.ClassLabel(names=["cat"])})).save_to_disk(str(folder))
    with pytest.raises(DatasetError, match="no column.* of objects with a 'bbox' .*--objects-column"):
        evaluation_data.hf_detection_items(folder, ID2LABEL, "disk")


def test_one_ground_truth_only_and_options_for_the_other_task_are_refused(tmp_path):
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"image": [{"bytes": CAT.read_bytes(), "path": "cat.png"}]},
                               features=datasets.Features({"image": datasets.Image()})).save_to_disk(str(folder))
    (tmp_path / "instances.json").write_text('{"images": [], "annotations": [], "categories": []}')
    # refused before any model is loaded (these weights do not exist)
    with pytest.raises(DatasetError, match="carries its own boxes .*one ground truth, not two"):
        evaluate(folder, "detr", annotations=tmp_path / "instances.json", progress=False, weights=str(tmp_path / "none"))
    with pytest.raises(DatasetError, match="--bbox-format is for a Hugging Face dataset"):
        evaluate(tmp_path, "detr", annotations=tmp_path / "instances.json", bbox_format="xyxy", progress=False,
                 weights=str(tmp_path / "none"))
    with pytest.raises(DatasetError, match="--label-column is for classification"):
        evaluate(folder, "detr", label_column="label", progress=False, weights=str(tmp_path / "none"))
    with pytest.raises(DatasetError, match="--objects-column and --bbox-format are for detection"):
        evaluate(folder, "resnet-50", objects_column="objects", progress=False, weights=str(tmp_path / "none"))


def test_image_ids_come_from_an_integer_column_else_the_row(tmp_path):
    named = datasets.Sequence({"bbox": datasets.Sequence(datasets.Value("float64"), length=4),
                               "category": datasets.ClassLabel(names=["cat"])})
    objects = [{"bbox": [[1, 2, 3, 4]], "category": [0]}, {"bbox": [], "category": []}]
    for column, values, feature, expected in [("image_id", [40, 7], datasets.Value("int64"), [40, 7]),
                                              ("id", ["a", "b"], datasets.Value("string"), [1, 2])]:
        folder = tmp_path / column
        folder.mkdir()
        ds = saved(folder, cat_rows(objects, **{column: values}), named, {column: feature})
        items, _, coco = evaluation_data.hf_detection_items(ds, ID2LABEL, "disk")
        assert [i.label for i in sorted(items, key=lambda i: i.row)] == expected
        assert [image["id"] for image in coco["images"]] == expected
        assert [a["image_id"] for a in coco["annotations"]] == expected[:1]
