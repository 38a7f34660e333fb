"""Derive the committed test subset of CrowdPose's validation annotations.

    python tests/data/make_crowdpose_subset.py SOURCE OUT

SOURCE: crowdpose_val.json of the CrowdPose API (see tests/data/README.md).
OUT: the gzip-compressed subset, e.g. tests/data/crowdpose_val_subset.json.gz.

Selection (deterministic, no randomness): every STRIDE-th image in file order, then, for each
property the tests rely on that none of those images has, the first image in file order that has
it. Images and annotations keep their source order and every field unchanged; the category is
copied as is (with the file's 17-joint COCO skeleton).
"""
import argparse
import gzip
import json
import sys

STRIDE = 5


def _flags(ann):
    return ann["keypoints"][2::3]


# What the tests need to see at least once (name -> test on one image's annotations and info).
PROPERTIES = {
    "easy (crowdIndex < 0.2)": lambda anns, im: im["crowdIndex"] < 0.2,
    "medium (0.2 <= crowdIndex < 0.8)": lambda anns, im: 0.2 <= im["crowdIndex"] < 0.8,
    "hard (crowdIndex >= 0.8)": lambda anns, im: im["crowdIndex"] >= 0.8,
    "image without persons": lambda anns, im: not anns,
    "iscrowd person": lambda anns, im: any(a["iscrowd"] for a in anns),
    "iscrowd person with labelled points": lambda anns, im: any(a["iscrowd"] and any(_flags(a)) for a in anns),
    "num_keypoints disagreeing with the flags": lambda anns, im: any(
        a["num_keypoints"] != sum(v > 0 for v in _flags(a)) for a in anns),
    "num_keypoints == 0 with labelled points": lambda anns, im: any(
        a["num_keypoints"] == 0 and any(_flags(a)) for a in anns),
}


def select(data):
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = data["images"]
    chosen = {i for i in range(len(images)) if i % STRIDE == 0}
    report = {}
    for name, has in PROPERTIES.items():
        holders = [i for i, im in enumerate(images) if has(by_image.get(im["id"], []), im)]
        if holders and not any(i in chosen for i in holders):
            chosen.add(holders[0])
        report[name] = f"{sum(1 for i in chosen if i in holders)} images" if holders else "none in the source"
    keep = [images[i] for i in sorted(chosen)]
    ids = {im["id"] for im in keep}
    subset = {"images": keep, "annotations": [a for a in data["annotations"] if a["image_id"] in ids],
              "categories": data["categories"]}
    return subset, report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source", help="crowdpose_val.json of the CrowdPose API")
    p.add_argument("out", help="output .json.gz")
    args = p.parse_args(argv)
    with open(args.source) as f:
        data = json.load(f)
    subset, report = select(data)
    text = json.dumps(subset, separators=(",", ":")).encode()
    # mtime=0 and no file name in the header: the same source gives the same bytes
    with open(args.out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(text)
    print(f"{args.out}: {len(subset['images'])} images, {len(subset['annotations'])} persons")
    for name, n in report.items():
        print(f"  {name}: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
