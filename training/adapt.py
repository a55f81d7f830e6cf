"""Calibrate a liveness model for one site: a minute of real faces and a minute of attacks from its camera.

    python -m training.adapt --model models/liveness.onnx --real real.mp4 --fake phone_replay.mp4 --out models/site.onnx

No model knows every camera: a threshold chosen on other setups may accept a new camera's attacks
or reject its people. PATH is a video, a folder of images or image files; faces are found with
the pipeline's detector (the largest face in each picture) and cut as the model's metadata says.
Part of the site data is held back (whole inputs when there are two or more of a label, else the
last part of each input, so that near-identical neighbouring frames do not sit on both sides).
On the rest the model's head (the last dense layer) is refitted on its frozen features, pulled
toward the original head so that a minute of video moves it only as far as it has evidence for,
and the threshold is set where the adapted head makes the fewest errors (lowest ACER). The output
is a model file like any other: the pipeline loads it with `classify.model`, and its metadata
records the base model, the date and the face counts. Before/after APCER, BPCER and ACER on the
held-back part are printed. Needs the `onnx` package (requirements-train.txt), not TensorFlow.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_FACES = 20  # per label, in the part adapted on
HELD_BACK = 0.3
ADAPT_L2 = 1.0


class AdaptError(ValueError):
    """Site data or a model that cannot be adapted; the message names what and why."""


@dataclass
class SiteFaces:
    """Crops of the site's faces with their label and the input (path) each came from."""

    x: np.ndarray
    y: np.ndarray
    origin: np.ndarray
    order: np.ndarray  # position within its input (frame order)


def gather_site(real: Sequence[Path], fake: Sequence[Path], metadata, skip: int | None) -> SiteFaces:
    """The largest face of every picture (every `skip`-th video frame) of each input, cut as the model wants."""
    from training.data import items_for
    from training.examples import load_gathered
    from training.gather_examples import gather

    items = []
    for label, paths in (("real", real), ("fake", fake)):
        for index, path in enumerate(paths):
            if not path.exists():
                raise AdaptError(f"--{label} {path}: not found")
            found = items_for(path, source=f"{label}_{index}", label=label)
            if not found:
                raise AdaptError(f"--{label} {path}: no image or video in it")
            items.extend(found)
    with tempfile.TemporaryDirectory(prefix="liveness-adapt-") as folder:
        gather(items, Path(folder), metadata.input_size, list(metadata.crop_scales), skip=skip,
               crop_resize=metadata.crop_resize, crop_border=metadata.crop_border, progress=False)
        data = load_gathered(Path(folder), include_jitter=False)
    x = data.x  # RGB tiles
    if metadata.channel_order == "BGR":
        x = x.reshape(*x.shape[:3], -1, 3)[..., ::-1].reshape(x.shape)
    order = np.zeros(len(data), dtype=np.int64)
    for source in set(data.source.tolist()):
        where = np.nonzero(data.source == source)[0]
        order[where] = np.arange(len(where))
    return SiteFaces(x, data.y, data.source, order)


def held_back(faces: SiteFaces, share: float = HELD_BACK) -> np.ndarray:
    """True for the faces kept for the before/after figures (see the module doc)."""
    test = np.zeros(len(faces.y), dtype=bool)
    for label in (0, 1):
        inputs = sorted(set(faces.origin[faces.y == label].tolist()))
        if len(inputs) >= 2:
            count = max(1, int(round(share * len(inputs))))
            for name in inputs[-count:]:
                test |= faces.origin == name
        else:
            for name in inputs:
                where = np.nonzero(faces.origin == name)[0]
                test[where[faces.order[where] >= int(np.ceil((1.0 - share) * len(where)))]] = True
    return test


@dataclass
class Head:
    """Where the softmax head sits in the ONNX graph, and its weights."""

    features: str  # name of the tensor the head reads
    weight_name: str
    bias_name: str
    weight: np.ndarray  # (features, 2)
    bias: np.ndarray  # (2,)


def find_head(model) -> Head | None:
    """The final MatMul -> Add -> Softmax of an exported liveness model (None if it has none)."""
    from onnx import numpy_helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    softmax = producer.get(graph.output[0].name)
    add = producer.get(softmax.input[0]) if softmax is not None and softmax.op_type == "Softmax" else None
    matmul = producer.get(add.input[0]) if add is not None and add.op_type == "Add" else None
    if matmul is None or matmul.op_type != "MatMul" or matmul.input[1] not in constants or add.input[1] not in constants:
        return None
    return Head(matmul.input[0], matmul.input[1], add.input[1], constants[matmul.input[1]], constants[add.input[1]])


def features_and_scores(model, head: Head, input_name: str, x: np.ndarray, metadata) -> tuple[np.ndarray, np.ndarray]:
    """(the head's input features, P(real)) of crops, from the model with its features as an extra output."""
    import onnx
    import onnxruntime as ort

    from liveness.model import normalise

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(head.features, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    features, scores = [], []
    for start in range(0, len(x), 64):
        batch = normalise(x[start : start + 64], metadata.mean, metadata.std)
        probabilities, feature = session.run(None, {input_name: batch})
        features.append(feature)
        scores.append(probabilities[:, metadata.real_index])
    return np.concatenate(features).astype(np.float64), np.concatenate(scores)


def middle_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold in the middle of those with the fewest errors (lowest ACER) on the adapted-on faces.

    Site data is small and often separated perfectly: the edge of the error-free range would sit on
    one face's score, so the middle of the range, between the two classes, is kept.
    """
    from training import metrics

    values = np.unique(scores)
    cuts = np.r_[values[0] - 1e-6, (values[1:] + values[:-1]) / 2.0, values[-1] + 1e-6] if len(values) > 1 else values
    errors = np.array([metrics.apcer(labels, scores, t) + metrics.bpcer(labels, scores, t) for t in cuts])
    best = cuts[errors <= errors.min() + 1e-12]
    return float(best[len(best) // 2])


def figures(labels: np.ndarray, scores: np.ndarray, threshold: float) -> str:
    """APCER / BPCER / ACER in % at a threshold, as one phrase."""
    from training import metrics

    apcer, bpcer = metrics.apcer(labels, scores, threshold), metrics.bpcer(labels, scores, threshold)
    return f"APCER {100 * apcer:.1f}%  BPCER {100 * bpcer:.1f}%  ACER {100 * (apcer + bpcer) / 2:.1f}%"


def adapt(model_path: Path, real: Sequence[Path], fake: Sequence[Path], out: Path, skip: int | None = None,
          min_faces: int = MIN_FACES) -> list[str]:
    """Write the site model to `out`; returns the report lines (AdaptError on bad input)."""
    import onnx
    from onnx import numpy_helper

    from liveness.metadata import METADATA_KEY, ModelMetadata
    from liveness.model import LivenessModel, ModelError
    from training.logistic import fit_logistic, sigmoid

    try:
        base = LivenessModel(model_path)
    except ModelError as error:
        raise AdaptError(str(error)) from None
    model = onnx.load(str(model_path))
    head = find_head(model)
    faces = gather_site(real, fake, base.metadata, skip)
    test = held_back(faces)
    counts = {name: (int(np.sum(~test & (faces.y == label))), int(np.sum(test & (faces.y == label))))
              for label, name in ((1, "real"), (0, "fake"))}
    short = [f"{name}: {fit} faces to adapt on (of {fit + kept})" for name, (fit, kept) in counts.items() if fit < min_faces]
    if short:
        raise AdaptError(f"too little site data, at least {min_faces} faces a label are needed ({'; '.join(short)}): "
                         "record longer videos or more pictures")
    if not all(kept for _, kept in counts.values()):
        raise AdaptError("no face of a label left to hold back for the before/after figures")
    if head is not None:
        features, scores = features_and_scores(model, head, model.graph.input[0].name, faces.x, base.metadata)
        real_column, fake_column = base.metadata.real_index, 1 - base.metadata.real_index
        prior = (head.weight[:, real_column] - head.weight[:, fake_column]).astype(np.float64), float(head.bias[real_column] - head.bias[fake_column])
        w, b = fit_logistic(features[~test], faces.y[~test], ADAPT_L2, prior=prior)
        adapted = sigmoid(features @ w + b)
        weight = np.zeros_like(head.weight)
        weight[:, real_column] = w
        bias = np.zeros_like(head.bias)
        bias[real_column] = b
        for init in model.graph.initializer:
            if init.name in (head.weight_name, head.bias_name):
                init.CopyFrom(numpy_helper.from_array((weight if init.name == head.weight_name else bias).astype(np.float32), init.name))
        how = "head refitted on frozen features, threshold"
    else:  # no dense head to refit (models before 2.0): the threshold alone
        scores = adapted = np.concatenate([base.predict_crops(faces.x[i : i + 64]) for i in range(0, len(faces.x), 64)])
        how = "threshold only (the model has no dense softmax head)"
    threshold = float(min(max(middle_threshold(faces.y[~test], adapted[~test]), 0.0), 1.0))
    meta = base.metadata
    record = {"base_model": model_path.name, "base_version": meta.model_version,
              "base_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
              "date": datetime.date.today().isoformat(), "adapted": how, "faces_adapted_on": {k: v[0] for k, v in counts.items()},
              "faces_held_back": {k: v[1] for k, v in counts.items()},
              "inputs": {"real": [Path(p).name for p in real], "fake": [Path(p).name for p in fake]}}
    new_meta = dataclasses.replace(meta, model_version=f"{meta.model_version}+site", threshold=threshold,
                                   threshold_policy="lowest ACER on the site's own faces (training.adapt)",
                                   training={**meta.training, "site_adaptation": record})
    kept = [prop for prop in model.metadata_props if prop.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=ModelMetadata.to_json(new_meta))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part.onnx")
    onnx.save(model, str(partial))
    try:
        check = LivenessModel(partial).predict_crops(faces.x[test][:16])
        if np.max(np.abs(check - adapted[test][:16])) > 1e-4:
            raise AdaptError("the written model does not reproduce the adapted scores")
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    y = faces.y[test]
    return [f"site faces: real {counts['real'][0]} adapted on + {counts['real'][1]} held back, "
            f"fake {counts['fake'][0]} + {counts['fake'][1]}",
            f"held back, before ({meta.model_version} at {base.threshold:.4f}): {figures(y, scores[test], base.threshold)}",
            f"held back, after  ({how} at {threshold:.4f}): {figures(y, adapted[test], threshold)}",
            f"wrote {out}"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m training.adapt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", type=Path, required=True, help="base liveness ONNX model")
    parser.add_argument("--real", type=Path, nargs="+", required=True, metavar="PATH", help="videos / image folders / images of real people")
    parser.add_argument("--fake", type=Path, nargs="+", required=True, metavar="PATH", help="the same of attacks (photos, screens)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="site model to write")
    parser.add_argument("--skip", type=int, default=None, help="use every N-th video frame (default: about 120 frames a video)")
    parser.add_argument("--min-faces", type=int, default=MIN_FACES, help="faces a label needed to adapt (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        for line in adapt(args.model, args.real, args.fake, args.out, args.skip, args.min_faces):
            print(line)
    except AdaptError as error:
        print(f"adapt: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
