"""Synthetic crowds: a CrowdPose-format dataset of articulated figures, rendered with OpenCV.

`generate(out_dir, num_train, num_test, image_size, seed, layouts="crowdpose", ...)` writes

  out_dir/json/crowdpose_{train,val,test,trainval}.json
  out_dir/images/<id>.jpg (or .png)

which the CrowdPose loader reads unchanged. Each image holds several figures with CrowdPose's
14 joints. Where the poses come from:
  * `layouts` = "crowdpose" (PACKAGED_LAYOUTS, the default): the person layouts of the real
    CrowdPose validation images, shipped with the package (higherpose/data/layouts/), or
    `layouts` = a path to a CrowdPose-format annotation file: one real image's person layout
    (positions, scales, overlaps and the labelled joints) is rescaled into the square image;
    joints the annotators left unlabelled are completed with body proportions. The packaged
    layouts equal those read from crowdpose_val.json itself, so both render identical files.
    (CrowdPose: Li et al., "CrowdPose: Efficient Crowded Scenes Pose Estimation and a New
    Benchmark", CVPR 2019.)
  * `layouts` = None or "none": a built-in sampler only: random height, position, torso lean,
    facing, limb angles. With real layouts the sampler still fills each image up to its drawn
    number of people (figures of a layout too small for the image size are dropped).

Drawing: figures go from far to near (lower feet = nearer), so nearer people cover farther
ones. Body parts are filled tapered shapes (torso, limbs, neck, head) in per-person colours with
a texture (noise, stripes or checks); every joint carries a small disc in a fixed colour per
joint type (left and right differ), which keeps the task learnable by small networks.

Visibility flags are read off the finished render: a joint outside the image is (0, 0, 0) and
not drawn; a joint whose pixel (integer-truncated position) shows the joint's own marker is
visible (v = 2); a joint covered there by a nearer figure, a foreground distractor or another
marker of the same figure is occluded (v = 1). num_keypoints is
the number of joints with v > 0; bbox is the full (unoccluded) silhouette clipped to the image.

crowdIndex (CrowdPose's crowd index): for every person i with n_a(i) > 0 labelled joints
(v > 0), n_b(i) = number of labelled joints of the *other* persons that lie inside i's bbox
(borders included); crowdIndex = mean over those persons of n_b(i) / n_a(i), rounded to 2
decimals (0 when nobody qualifies). Recomputed this way on the real crowdpose_val.json it
reproduces the published value of about three images in four exactly (the rest were computed by
the authors on annotations that are not all released).
"""
import gzip
import json
import math
import os

import cv2
import numpy as np

from .info import CROWDPOSE_FLIP, CROWDPOSE_JOINTS, CROWDPOSE_SKELETON

NUM_JOINTS = 14
LS, RS, LE, RE, LW, RW, LH, RH, LK, RK, LA, RA, HEAD, NECK = range(14)

# Body proportions as fractions of the standing height (head top to ankles).
PROPORTION = {"head": 0.12, "shoulder": 0.10, "torso": 0.30, "hip": 0.075, "upper_arm": 0.16,
              "forearm": 0.14, "thigh": 0.23, "shin": 0.22}
LIMB_CHAINS = [  # (root, middle, end, upper length, lower length, is_arm)
    (LS, LE, LW, "upper_arm", "forearm", True), (RS, RE, RW, "upper_arm", "forearm", True),
    (LH, LK, LA, "thigh", "shin", False), (RH, RK, RA, "thigh", "shin", False),
]
# Marker colour per joint type (RGB): left joints warm, right joints cool, head/neck neutral.
MARKER_RGB = np.array([
    (255, 40, 40), (40, 90, 255), (255, 140, 0), (0, 200, 255), (255, 230, 0), (140, 60, 255),
    (255, 0, 170), (0, 255, 140), (200, 255, 0), (0, 120, 120), (150, 40, 0), (0, 40, 140),
    (255, 255, 255), (20, 20, 20)], np.uint8)
SPLIT_BASE = {"train": 100000, "val": 200000, "test": 300000}
SPLIT_CODE = {"train": 1, "val": 2, "test": 3}

# generate(layouts=PACKAGED_LAYOUTS): person layouts of the real CrowdPose val images, shipped
# in higherpose/data/layouts/ (derived from crowdpose_val.json; see the README there).
PACKAGED_LAYOUTS = "crowdpose"
PACKAGED_LAYOUTS_FILE = "crowdpose_val_layouts.json.gz"

_LAYOUT_CACHE = {}


# ----------------------------------------------------------------------------- poses

def _unit(v):
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 1e-9 else np.array([0.0, -1.0])


def complete_pose(kp, known, height, rng, facing=None):
    """Fill unknown joints of one figure from body proportions and random limb angles.

    kp [14, 2] image coordinates (entries of unknown joints are ignored), known [14] bool,
    height in pixels. Returns a full [14, 2] array. With no known joint except the neck this is
    the built-in pose sampler.
    """
    kp = np.array(kp, np.float64)
    known = np.array(known, bool)
    h = float(height)
    P = {k: v * h for k, v in PROPORTION.items()}
    hip_mid = (kp[LH] + kp[RH]) / 2 if known[LH] and known[RH] else None
    sh_mid = (kp[LS] + kp[RS]) / 2 if known[LS] and known[RS] else None
    if not known[NECK]:
        if sh_mid is not None:
            kp[NECK] = sh_mid
        elif known[HEAD]:
            kp[NECK] = kp[HEAD] + np.array([0, P["head"]])
        elif hip_mid is not None:
            kp[NECK] = hip_mid - np.array([0, P["torso"]])
        else:
            anchor = kp[known][0] if known.any() else np.zeros(2)
            kp[NECK] = anchor
        known[NECK] = True
    # torso axis: up (towards the head) and side (towards the image right)
    if hip_mid is not None and np.hypot(*(kp[NECK] - hip_mid)) > 1e-3:
        up = _unit(kp[NECK] - hip_mid)
    elif known[HEAD]:
        up = _unit(kp[HEAD] - kp[NECK])
    else:
        lean = rng.normal(0, math.radians(8))
        up = np.array([math.sin(lean), -math.cos(lean)])
    side = np.array([-up[1], up[0]])
    down = -up
    if facing is None:
        if known[LS] and known[RS] and abs(np.dot(kp[LS] - kp[RS], side)) > 1e-3:
            facing = 1.0 if np.dot(kp[LS] - kp[RS], side) > 0 else -1.0
        elif known[LH] and known[RH] and abs(np.dot(kp[LH] - kp[RH], side)) > 1e-3:
            facing = 1.0 if np.dot(kp[LH] - kp[RH], side) > 0 else -1.0
        else:
            facing = 1.0 if rng.random() < 0.5 else -1.0
    turn = rng.uniform(0.6, 1.0)  # shoulders look narrower when the body is turned
    if not known[HEAD]:
        kp[HEAD] = kp[NECK] + up * P["head"]
    for joint, sign in ((LS, 1.0), (RS, -1.0)):
        if not known[joint]:
            other = RS if joint == LS else LS
            if known[other]:
                kp[joint] = 2 * kp[NECK] - kp[other]
            else:
                kp[joint] = kp[NECK] + side * sign * facing * P["shoulder"] * turn + down * 0.02 * h
    if hip_mid is None:
        if known[LH] or known[RH]:
            ref = LH if known[LH] else RH
            sign = 1.0 if ref == LH else -1.0
            hip_mid = kp[ref] - side * sign * facing * P["hip"] * turn
        else:
            hip_mid = kp[NECK] + down * P["torso"]
    for joint, sign in ((LH, 1.0), (RH, -1.0)):
        if not known[joint]:
            kp[joint] = hip_mid + side * sign * facing * P["hip"] * turn
    for root, mid, end, upper, lower, is_arm in LIMB_CHAINS:
        outward = 1.0 if np.dot(kp[root] - (kp[NECK] if is_arm else hip_mid), side) >= 0 else -1.0
        if not known[mid]:
            if known[end]:
                kp[mid] = (kp[root] + kp[end]) / 2 + side * outward * rng.uniform(0, 0.05) * h
            else:
                a = math.radians(rng.uniform(-25, 110) if is_arm else rng.uniform(-10, 35))
                d = math.cos(a) * down + math.sin(a) * side * outward
                kp[mid] = kp[root] + d * P[upper] * rng.uniform(0.85, 1.1)
        if not known[end]:
            d = _unit(kp[mid] - kp[root])
            bend = math.radians(rng.uniform(-100, 100) if is_arm else rng.uniform(-15, 50))
            d = np.array([d[0] * math.cos(bend) - d[1] * math.sin(bend),
                          d[0] * math.sin(bend) + d[1] * math.cos(bend)])
            kp[end] = kp[mid] + d * P[lower] * rng.uniform(0.85, 1.1)
    return kp


def estimate_height(kp, known, bbox=None):
    """Standing height of a (partly) labelled figure from its labelled segment lengths."""
    pairs = [((HEAD, NECK), "head"), ((LS, LE), "upper_arm"), ((RS, RE), "upper_arm"),
             ((LE, LW), "forearm"), ((RE, RW), "forearm"), ((LH, LK), "thigh"), ((RH, RK), "thigh"),
             ((LK, LA), "shin"), ((RK, RA), "shin"), ((LS, RS), None), ((LH, RH), None)]
    guesses = []
    for (a, b), part in pairs:
        if known[a] and known[b]:
            length = float(np.hypot(*(kp[a] - kp[b])))
            frac = PROPORTION[part] if part else (2 * PROPORTION["shoulder"] if a == LS else 2 * PROPORTION["hip"])
            guesses.append(length / frac)
    if known[NECK] and known[LH] and known[RH]:
        guesses.append(float(np.hypot(*(kp[NECK] - (kp[LH] + kp[RH]) / 2))) / PROPORTION["torso"])
    if guesses:
        return float(np.median(guesses))
    if bbox is not None:
        return max(float(bbox[3]), 0.5 * float(bbox[2]), 1.0)
    return 1.0


def _records_from_annotations(path):
    """Usable persons of a CrowdPose-format file, values as the file holds them: a list of
    {"id", "width", "height", "persons": [{"xy": 28 numbers, "known": 14 x 0/1, "bbox"}]} for
    the images that have any. Usable: not iscrowd and at least 4 labelled joints (v > 0)."""
    from .annotations import KeypointAnnotations
    db = KeypointAnnotations(path, NUM_JOINTS)
    records = []
    for image_id in db.image_ids:
        info = db.images[image_id]
        persons = []
        for a in db.annotations(image_id):
            kps = a["keypoints"]
            known = [int(v > 0) for v in kps[2::3]]
            if a["iscrowd"] or sum(known) < 4:
                continue
            xy = [v for j in range(NUM_JOINTS) for v in kps[3 * j:3 * j + 2]]
            persons.append({"xy": xy, "known": known, "bbox": a.get("bbox")})
        if persons:
            records.append({"id": image_id, "width": info["width"], "height": info["height"], "persons": persons})
    return records


def _packaged_records():
    """The records of the packaged CrowdPose val layouts (higherpose/data/layouts/README.md)."""
    from importlib.resources import files
    with (files("higherpose") / "data" / "layouts" / PACKAGED_LAYOUTS_FILE).open("rb") as f:
        return json.loads(gzip.decompress(f.read()))["images"]


def write_layouts(records, out_path, source=""):
    """Write layout records (as `_records_from_annotations` returns them) as gzip-compressed JSON;
    the same records give the same bytes."""
    text = json.dumps({"source": source, "images": records}, separators=(",", ":")).encode()
    with open(out_path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(text)


def load_layouts(layouts=PACKAGED_LAYOUTS):
    """Real person layouts: list of (width, height, [(kp [14,2], known [14], bbox), ...]).

    layouts: PACKAGED_LAYOUTS ("crowdpose": the CrowdPose val layouts shipped with the package),
    a path to a CrowdPose-format annotation file, or None / "none" / "" (returns None: sampled
    poses). Persons kept: not iscrowd, at least 4 labelled joints; images without one are left
    out. Both sources give the same list for the same annotations.
    """
    if layouts is None or layouts in ("", "none"):
        return None
    layouts = os.fspath(layouts)
    if layouts in _LAYOUT_CACHE:
        return _LAYOUT_CACHE[layouts]
    records = _packaged_records() if layouts == PACKAGED_LAYOUTS else _records_from_annotations(layouts)
    out = []
    for r in records:
        persons = [(np.asarray(p["xy"], np.float64).reshape(NUM_JOINTS, 2), np.asarray(p["known"], bool), p["bbox"])
                   for p in r["persons"]]
        out.append((float(r["width"]), float(r["height"]), persons))
    if not out:
        raise ValueError(f"{layouts}: no usable person layouts (need persons with >= 4 labelled joints)")
    _LAYOUT_CACHE[layouts] = out
    return out


def sample_people(rng, size, min_people, max_people, layouts=None):
    """Full 14-joint poses [P, 14, 2] and heights [P] for one image."""
    people, heights = [], []
    if layouts:
        w, h, persons = layouts[int(rng.integers(len(layouts)))]
        s = size / max(w, h)
        offset = np.array([(size - w * s) / 2, (size - h * s) / 2])
        mirror = rng.random() < 0.5
        order = list(rng.permutation(len(persons)))[:max_people]
        for idx in order:
            kp, known, bbox = persons[idx]
            kp = kp * s + offset
            if mirror:
                kp = np.stack([size - kp[:, 0], kp[:, 1]], 1)[CROWDPOSE_FLIP]
                known = known[CROWDPOSE_FLIP]
            height = estimate_height(kp, known, None if bbox is None else np.asarray(bbox) * s)
            if height < 0.12 * size:  # too small to be learnable at this image size
                continue
            people.append(complete_pose(kp, known, height, rng))
            heights.append(height)
    n = int(rng.integers(min_people, max_people + 1))
    while len(people) < n:
        crowd = max(n, 1)
        height = size * rng.uniform(0.35, 0.8) / (1 + 0.12 * (crowd - 1))
        neck = np.array([rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size - 0.2 * height])
        kp = np.zeros((NUM_JOINTS, 2))
        kp[NECK] = neck
        known = np.zeros(NUM_JOINTS, bool)
        known[NECK] = True
        people.append(complete_pose(kp, known, height, rng))
        heights.append(height)
    return np.array(people, np.float64).reshape(-1, NUM_JOINTS, 2), np.array(heights, np.float64)


# ----------------------------------------------------------------------------- drawing

_SHIFT = 4
_ONE = 1 << _SHIFT


def _fix(p):
    return (int(round(p[0] * _ONE)), int(round(p[1] * _ONE)))


def _limb(mask, p1, p2, w1, w2):
    d = _unit(np.asarray(p2, np.float64) - p1)
    n = np.array([-d[1], d[0]])
    quad = np.array([p1 + n * w1 / 2, p2 + n * w2 / 2, p2 - n * w2 / 2, p1 - n * w1 / 2])
    cv2.fillConvexPoly(mask, np.round(quad * _ONE).astype(np.int32), 1, cv2.LINE_8, _SHIFT)
    cv2.circle(mask, _fix(p1), int(round(w1 / 2 * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
    cv2.circle(mask, _fix(p2), int(round(w2 / 2 * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)


def _texture(rng, shape, colour):
    """A colour field over `shape` (h, w): plain noise, stripes or checks around `colour`."""
    h, w = shape
    base = np.empty((h, w, 3), np.float32)
    base[:] = colour
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 1:
        a = rng.uniform(0, math.pi)
        period = rng.uniform(4, 12)
        wave = np.sign(np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period))
        base *= (1 + 0.18 * wave)[..., None]
    elif kind == 2:
        cell = rng.uniform(4, 10)
        checks = ((xx // cell + yy // cell) % 2) * 2 - 1
        base *= (1 + 0.15 * checks)[..., None]
    base += rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    return base


def _random_colour(rng, lo=30, hi=230):
    return rng.uniform(lo, hi, 3).astype(np.float32)


SKIN = np.array([(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66),
                 (141, 85, 36), (92, 58, 34)], np.float32)


def _background(rng, size, clutter=1.0):
    c1, c2 = _random_colour(rng, 20, 235), _random_colour(rng, 20, 235)
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = (xx * math.cos(a) + yy * math.sin(a))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    low = cv2.resize(rng.normal(0, 18, (6, 6, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    img = img + low + rng.normal(0, 4, (size, size, 3)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(round(rng.integers(3, 9) * clutter))):
        _distractor(rng, img, None, size, 0)
    return cv2.GaussianBlur(img, (3, 3), 0)


def _distractor(rng, img, owner, size, owner_value):
    """A random rectangle, ellipse, polygon or thick line (clutter that is not a person)."""
    colour = tuple(int(c) for c in _random_colour(rng, 10, 245))
    kind = rng.integers(4)
    c = rng.uniform(0, size, 2)
    r = rng.uniform(0.03, 0.15) * size
    # all random draws first, so the image and the owner map get the same shape
    box = (c - r * rng.uniform(0.3, 1, 2), c + r * rng.uniform(0.3, 1, 2))
    axes = (int(r * _ONE), int(r * rng.uniform(0.3, 1) * _ONE))
    angle = float(rng.uniform(0, 180))
    poly = c + rng.uniform(-r, r, (int(rng.integers(3, 6)), 2))
    end = c + rng.uniform(-2 * r, 2 * r, 2)
    layers = [(img, colour)] + ([(owner, owner_value)] if owner is not None else [])
    for canvas, value in layers:
        if kind == 0:
            cv2.rectangle(canvas, _fix(box[0]), _fix(box[1]), value, -1, cv2.LINE_8, _SHIFT)
        elif kind == 1:
            cv2.ellipse(canvas, _fix(c), axes, angle, 0, 360, value, -1, cv2.LINE_8, _SHIFT)
        elif kind == 2:
            cv2.fillPoly(canvas, [np.round(poly * _ONE).astype(np.int32)], value, cv2.LINE_8, _SHIFT)
        else:
            cv2.line(canvas, _fix(c), _fix(end), value, max(1, int(r * 0.25)), cv2.LINE_8, _SHIFT)
    return img


def _person_masks(kp, height, rng):
    """Masks per colour group of one figure: shirt, trousers, skin. Returns a function that
    draws them on canvases of a given size."""
    h = height
    arm_w = h * 0.055 * rng.uniform(0.8, 1.3)
    leg_w = h * 0.075 * rng.uniform(0.8, 1.3)
    head_r = h * 0.07 * rng.uniform(0.85, 1.15)
    short_sleeves = rng.random() < 0.4

    def draw(shirt, trousers, skin):
        # torso: shoulders and hips widened by half a limb
        torso = np.array([kp[LS], kp[RS], kp[RH], kp[LH]])
        centre = torso.mean(axis=0)
        torso = centre + (torso - centre) * 1.12
        cv2.fillPoly(shirt, [np.round(torso * _ONE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
        _limb(shirt, kp[LS], kp[RS], arm_w, arm_w)
        _limb(trousers, kp[LH], kp[RH], leg_w, leg_w)
        _limb(skin, kp[NECK], kp[HEAD], h * 0.05, h * 0.05)
        cv2.circle(skin, _fix(kp[HEAD]), int(round(head_r * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
        for root, mid, end, _, _, is_arm in LIMB_CHAINS:
            if is_arm:
                _limb(shirt, kp[root], kp[mid], arm_w, arm_w * 0.9)
                _limb(skin if short_sleeves else shirt, kp[mid], kp[end], arm_w * 0.9, arm_w * 0.7)
                cv2.circle(skin, _fix(kp[end]), int(round(arm_w * 0.6 * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
            else:
                _limb(trousers, kp[root], kp[mid], leg_w, leg_w * 0.85)
                _limb(trousers, kp[mid], kp[end], leg_w * 0.85, leg_w * 0.65)
        return shirt, trousers, skin

    return draw


def render_scene(rng, size, people, heights, marker_scale=1.0, clutter=1.0):
    """Draw one image. Returns (RGB image, label map, full silhouettes).

    label[y, x] says what is on top at each pixel: 32·(p + 1) + (j + 1) for the marker of joint j
    of figure p, 32·(p + 1) for the rest of figure p, −1 for a foreground distractor, 0 for the
    background. people must be sorted far to near.
    """
    img = _background(rng, size, clutter)
    owner = np.zeros((size, size), np.int32)
    silhouettes = []
    for p, (kp, height) in enumerate(zip(people, heights)):
        masks = [np.zeros((size, size), np.uint8) for _ in range(3)]
        _person_masks(kp, height, rng)(*masks)
        shirt_c, trousers_c = _random_colour(rng), _random_colour(rng, 15, 200)
        skin_c = SKIN[int(rng.integers(len(SKIN)))] * rng.uniform(0.9, 1.05)
        silhouette = np.zeros((size, size), bool)
        for mask, colour in zip(masks, (shirt_c, trousers_c, skin_c)):
            m = mask.astype(bool)
            if not m.any():
                continue
            ys, xs = np.nonzero(m)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            tex = np.clip(_texture(rng, (y1 - y0, x1 - x0), colour), 0, 255).astype(np.uint8)
            sub = m[y0:y1, x0:x1]
            img[y0:y1, x0:x1][sub] = tex[sub]
            silhouette |= m
        radius = max(2.0, 0.022 * height * marker_scale)
        owner[silhouette] = 32 * (p + 1)
        for j in range(NUM_JOINTS):
            x, y = kp[j]
            if 0 <= x < size and 0 <= y < size:
                colour = tuple(int(c) for c in MARKER_RGB[j])
                cv2.circle(img, _fix(kp[j]), int(round(radius * _ONE)), colour, -1, cv2.LINE_8, _SHIFT)
                cv2.circle(owner, _fix(kp[j]), int(round(radius * _ONE)), 32 * (p + 1) + j + 1, -1,
                           cv2.LINE_8, _SHIFT)
        silhouette |= (owner >= 32 * (p + 1)) & (owner < 32 * (p + 2))
        silhouettes.append(silhouette)
    # occasional foreground clutter that may hide joints
    if rng.random() < 0.3 * clutter:
        _distractor(rng, img, owner, size, -1)
    return img, owner, silhouettes


# ----------------------------------------------------------------------------- annotations

def crowd_index(keypoints, boxes):
    """CrowdPose crowd index of one image (see the module docstring).

    keypoints [P, J, 3], boxes [P, 4] as (x, y, w, h)."""
    keypoints = np.asarray(keypoints, np.float64).reshape(len(boxes), -1, 3)
    ratios = []
    for i, (x, y, w, h) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        own = int((keypoints[i, :, 2] > 0).sum())
        if own == 0:
            continue
        inside = 0
        for k in range(len(keypoints)):
            if k == i:
                continue
            other = keypoints[k]
            lab = other[:, 2] > 0
            inside += int((lab & (other[:, 0] >= x) & (other[:, 0] <= x + w)
                           & (other[:, 1] >= y) & (other[:, 1] <= y + h)).sum())
        ratios.append(inside / own)
    return round(float(np.mean(ratios)), 2) if ratios else 0.0


def annotate(people, label, silhouettes, size):
    """Keypoints with visibility read from the label map (visible = the joint's own marker is
    on top at its pixel), bboxes from the silhouettes."""
    records = []
    for p, kp in enumerate(people):
        flat = []
        for j, (x, y) in enumerate(kp):
            if 0 <= x < size and 0 <= y < size:
                v = 2 if label[int(y), int(x)] == 32 * (p + 1) + j + 1 else 1
                flat += [round(float(x), 2), round(float(y), 2), v]
            else:
                flat += [0, 0, 0]
        ys, xs = np.nonzero(silhouettes[p])
        if len(xs) == 0:
            continue
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        num = sum(1 for v in flat[2::3] if v > 0)
        if num < 2:  # (almost) entirely outside the image: not a usable person
            continue
        records.append({"keypoints": flat, "bbox": bbox, "num_keypoints": num})
    return records


def make_image(size, seed, split, index, layouts=None, min_people=1, max_people=6, marker_scale=1.0,
               clutter=1.0):
    """Render image `index` of `split`. Returns (RGB image, person records, label map)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, SPLIT_CODE[split], int(index)])
    people, heights = sample_people(rng, size, min_people, max_people, layouts)
    # far to near: lower feet are nearer the camera
    feet = np.maximum(people[:, LA, 1], people[:, RA, 1]) + rng.normal(0, 0.01 * size, len(people))
    order = np.argsort(feet, kind="stable")
    people, heights = people[order], heights[order]
    img, label, silhouettes = render_scene(rng, size, people, heights, marker_scale, clutter)
    return img, annotate(people, label, silhouettes, size), label


def _write_atomic(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def category():
    return {"supercategory": "person", "id": 1, "name": "person", "keypoints": list(CROWDPOSE_JOINTS),
            "skeleton": [[a + 1, b + 1] for a, b in CROWDPOSE_SKELETON]}


def generate(out_dir, num_train, num_test, image_size, seed, layouts=PACKAGED_LAYOUTS, min_people=1, max_people=6,
             num_val=None, image_format="jpg", jpeg_quality=95, marker_scale=1.0, clutter=1.0):
    """Render a synthetic CrowdPose-format data set into out_dir (see the module docstring).

    Splits: train (num_train images), val (num_val, default num_test), test (num_test), and
    trainval = train + val. Image ids: 100000 + i (train), 200000 + i (val), 300000 + i (test).
    Every image depends only on (seed, split, index): same arguments, identical files.
    layouts: "crowdpose" (packaged real layouts), an annotation file path, or None / "none"
    (sampled poses); see `load_layouts`.
    Difficulty knobs: marker_scale scales the joint markers' radius (default max(2, 0.022·height)
    px); clutter scales the number of background distractors and the chance (0.3) of a
    foreground distractor (0 = none).
    Returns a dict split -> annotation file path.
    """
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if not (1 <= min_people <= max_people):
        raise ValueError(f"need 1 <= min_people <= max_people, got {min_people}, {max_people}")
    if int(image_size) < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    num_val = num_test if num_val is None else num_val
    for n in (num_train, num_val, num_test):
        if not 0 <= int(n) < 100000:
            raise ValueError(f"split sizes must be in [0, 100000), got {n}")
    layout_list = load_layouts(layouts)
    os.makedirs(os.path.join(out_dir, "json"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    size = int(image_size)
    splits = {}
    for split, count in (("train", num_train), ("val", num_val), ("test", num_test)):
        images, anns = [], []
        for i in range(int(count)):
            image_id = SPLIT_BASE[split] + i
            img, records, _ = make_image(size, seed, split, i, layout_list, min_people, max_people,
                                         marker_scale, clutter)
            file_name = f"{image_id}.{image_format}"
            params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_format == "jpg" else []
            ok, buf = cv2.imencode("." + image_format, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
            if not ok:
                raise OSError(f"could not encode {file_name}")
            _write_atomic(os.path.join(out_dir, "images", file_name), buf.tobytes())
            boxes = [r["bbox"] for r in records]
            kps = [r["keypoints"] for r in records]
            images.append({"file_name": file_name, "id": image_id, "height": size, "width": size,
                           "crowdIndex": crowd_index(kps, boxes) if records else 0.0})
            for k, r in enumerate(records):
                anns.append({"num_keypoints": r["num_keypoints"], "iscrowd": 0, "keypoints": r["keypoints"],
                             "image_id": image_id, "bbox": [round(v, 2) for v in r["bbox"]],
                             "category_id": 1, "id": image_id * 100 + k})
        splits[split] = (images, anns)
    splits["trainval"] = (splits["train"][0] + splits["val"][0], splits["train"][1] + splits["val"][1])
    paths = {}
    for split, (images, anns) in splits.items():
        path = os.path.join(out_dir, "json", f"crowdpose_{split}.json")
        data = {"images": images, "annotations": anns, "categories": [category()]}
        _write_atomic(path, json.dumps(data).encode())
        paths[split] = path
    return paths
