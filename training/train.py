"""Train a liveness classifier on gathered crops and export it as the pipeline's ONNX model.

    python -m training.train --dataset ../shared/data --model models/liveness.onnx --plot runs/plot.png

`--dataset` is a data set folder or manifest (gathered once into runs/cache with the pipeline's
detector and crops) or a folder written by `training.gather_examples`. Train and validation are
split by source (person and capture setup), never by frame. The ONNX file carries its metadata
(input size, channel order, scaling, crop scales, labels, threshold, training summary) and
is checked against Keras on real crops before it is accepted.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from liveness.crop import CROP_BORDERS, CROP_RESIZES
from training.augment import DEGRADE_P, DRAWINGS, augment_batch, damage_by_label, frame_edges, screen_recaptures
from training.examples import Examples, load_dataset, tile_channels
from training.padding import padding_shares
from training.probe import PROBE_STEMS, train_probe, with_probe
from training.pretrained import PRETRAINED_STEM_ARCHITECTURES

# Architectures a member after the first may have instead of the first's: on a res10 member's tuned
# first stage (livenessnet.split_at_first_stage), or an independent one.
PARTNER_ARCHITECTURES = ("res10_deep_context", "blaze", "blaze_deep", "mesh")
# Partners that share nothing with member 1 (a stem pretrained elsewhere): trained whole (mesh: all but
# its frozen stem), averaged.
INDEPENDENT_PARTNERS = ("blaze", "blaze_deep", "mesh")

MEAN = [0.5, 0.5, 0.5]
STD = [0.5, 0.5, 0.5]
PARITY_LIMIT = 1e-4


@dataclass
class TrainConfig:
    """Everything that decides a training run (stored in the model's metadata)."""

    architecture: str = "mobile"
    size: int = 64
    scales: list[float] = field(default_factory=lambda: [1.5, 2.7])
    epochs: int = 12
    samples_per_epoch: int = 4096
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    seed: int = 7
    # Share of the sampling weight a source gets grows only with sqrt(its size), so the big
    # frame sources do not drown the many small ones, nor the other way round.
    source_power: float = 0.5
    # Crop sources are tight crops padded with black (not what the pipeline sees on frames):
    # they teach face texture but get less weight than full-frame sources.
    crop_weight: float = 0.5
    # Weight of the auxiliary Fourier-spectrum loss (training.livenessnet.with_spectrum_head); 0 = off.
    spectrum_weight: float = 0.0
    # Weight of the pixel-wise binary loss (livenessnet.with_pixel_head, DeepPixBiS): every location of
    # the last block's map must tell real from fake on its own. 0 = off: 1.0 ranked Replay-Attack left
    # out whole below chance (docs/training.md).
    pixel_weight: float = 0.0
    # Weight of the real-compactness loss (real_compactness): real faces of every source pulled to one
    # point of the pooled-feature sphere, attacks left free (the asymmetric idea of single-side domain
    # generalisation: live faces alike across setups, attacks differ). 0 = off.
    real_compact_weight: float = 0.0
    # Strength of the single-side source adversary (livenessnet.with_source_adversary): a classifier
    # learns each real face's source from the pooled features and the network, through a gradient
    # reversal ramped up to this strength, learns to make real faces of every source alike. 0 = off:
    # 0.1 and 0.5 ranked the webcam sets left out whole worse (docs/training.md).
    real_adversary_weight: float = 0.0
    # Models trained with seeds seed, seed + 1, ... and averaged into one exported graph.
    ensemble: int = 1
    # The exported graph also scores the mirrored crops and averages (test-time flip).
    flip_average: bool = False
    # Probability of blur / downscale / JPEG damage for attacks and for real faces (augment.DEGRADE_P).
    degrade_p: tuple[float, float] = DEGRADE_P
    # Damage rates set per source instead: the label whose face tiles are the sharper in that
    # source gets the higher of the two rates (damage_rates), so that within a source sharpness
    # points neither way; the data's sources disagree on which label is blurrier. Measured worse on
    # the crop-source folds (docs/training.md), so off.
    degrade_by_source: bool = False
    # Instance normalisation of the input: every channel of every crop to zero mean and unit spread
    # (livenessnet.standardise_channels), against the exposure / white balance of a capture setup.
    # Measured worse on unseen people, Replay-Attack and the webcam sets most (docs/training.md), so off.
    input_standardise: bool = False
    # res10 architecture: keep the detector's stem as it is (weights and batch-norm statistics) and
    # train only the separable blocks. Seeds of such models share one stem, so an ensemble computes
    # it once per face (combine), at about one network's cost. Ranked worse than a fine-tuned stem
    # (docs/training.md), so off.
    freeze_stem: bool = False
    # res10 ensembles: member 1 fine-tunes the stem as usual; the other members train their blocks on
    # a frozen copy of member 1's tuned stem, so the graph computes that stem once per face (combine).
    # A frozen *original* stem lost on Replay-Attack; this keeps the tuned one at about the cost of
    # one network plus a set of blocks per extra member.
    share_tuned_stem: bool = False
    # With share_tuned_stem: members after the first are of this architecture ("" = the first's). A
    # res10_deep_context partner takes member 1's tuned first stage, frozen, and trains the rest (its
    # second stage starts from res10's); the graph computes the first stage once per tile for both.
    # A blaze partner (BlazeFace's pretrained layers) shares nothing and trains whole.
    partner_architecture: str = ""
    # One more member after the ensemble's, of an INDEPENDENT_PARTNERS architecture, trained whole
    # (seed + ensemble) and averaged with the others ("": none).
    extra_architecture: str = ""
    # A frozen probe (training.probe) on this pretrained stem ("mesh": MediaPipe's face mesh; "": none),
    # fitted on the training crops after the networks and weighing as one more member of the average.
    frozen_probe: str = ""
    # With frozen_probe: the probe counts only for faces whose probe statistics lie beyond the training
    # crops' 99th percentile of Mahalanobis distance (probe.fit_gate), where the networks face a setup
    # they never saw; elsewhere the networks decide alone.
    probe_gate: bool = False
    # The probe's share of the score where it counts (0: as one more member, 1 / (members + 1)).
    # With the gate on, where it opens the networks have met a setup they never saw, so the probe
    # may weigh more there than as one member among many (docs/training.md, "The gated probe's weight").
    probe_weight: float = 0.0
    # With frozen_probe: every capture setup weighs the same in the probe's fit (probe.row_weights), so
    # the three big frame sets do not decide it alone (training.setup_curve; docs/training.md).
    probe_balance_setups: bool = False
    # How crops are shrunk to `size` (liveness.crop.CROP_RESIZES; stored in the model's metadata).
    # "area_fast" halves the crop cost but measured worse on unseen people (docs/training.md).
    crop_resize: str = "area"
    # What a crop square past the frame edge shows (liveness.crop.CROP_BORDERS; stored in the metadata).
    crop_border: str = "black"
    # Probability of a drawn surgical mask on a sample's face, both labels alike (augment.surgical_masks):
    # the data holds no masked people, and 1.2 rejected drawn-masked ones 4x as often (docs/training.md).
    mask_p: float = 0.0
    # Probability of a drawn dark screen (switched-off TV, monitor) behind or beside a sample's face,
    # both labels alike (augment.background_screens): against "dark rectangle near the face = replay".
    # 0 = off: 0.3 made held-up phones pass more often on the webcam sets (docs/training.md).
    screen_p: float = 0.0
    # Probability of another sample's face pasted beside or above a sample's face, both labels alike
    # (augment.background_people): against "a second face nearby = a screen showing people". 0 = off:
    # 0.3 ranked NUAA left out whole worse and did not rescue its rejected sessions (docs/training.md).
    bystander_p: float = 0.0
    # Probability of another camera's tone curve (black level, peak white, colour gains, saturation,
    # gamma: augment.camera_tones) on a sample, both labels alike: a camera's tone must not be a cue.
    # 0 = off: 0.5 ranked Replay-Attack left out whole below chance (docs/training.md).
    tone_p: float = 0.0
    # Probability of a dimmer exposure and light from one side (augment.side_lighting) on a sample,
    # both labels alike: Replay-Attack's real faces under adverse light must not read as attacks. 0 = off:
    # 0.5 ranked the webcam sets left out whole worse on both seeds (docs/training.md).
    light_p: float = 0.0
    # Probability of backlight (augment.backlighting: the face darker, the scene around it brighter) on a
    # sample, both labels alike: Replay-Attack's most rejected real faces are backlit. 0 = off: 0.5 ranked
    # NUAA left out whole better but Replay-Attack worse on both seeds (docs/training.md).
    backlight_p: float = 0.0
    # Probability per training batch that MixStyle mixes the samples' per-channel statistics of
    # res10's first-stage features (livenessnet.MixStyle: a setup's style must not decide). 0 = off:
    # 0.5 ranked setups never seen worse on a second seed (docs/training.md).
    mixstyle_p: float = 0.0
    # Probability that a drawn real face becomes a simulated close-up recapture of itself (screen tone
    # and colour, moire, glare: augment.screen_recaptures), labelled as a replay: attacks of the same
    # person, room and camera as the real faces. 0 = off: 0.2 ranked Replay-Attack left out whole
    # inverted, its real faces taken for recaptures (docs/training.md).
    recapture_p: float = 0.0
    # Central-difference depthwise convolutions in the separable blocks (livenessnet.CentralDifferenceDepthwiseConv2D):
    # the share theta of each kernel read as differences from the centre pixel. 0 = plain convolutions:
    # 0.7 ranked Replay-Attack left out whole better but the webcam sets worse (docs/training.md).
    cdc_theta: float = 0.0
    # The same on the members after the first only (member 1 stays plain): CDC's Replay-Attack gain
    # without its webcam loss, if the loss sits in member 1. 0 = off: with 0.7 both went (docs/training.md).
    partner_cdc_theta: float = 0.0
    # Sharpness-aware steps of this radius (training.sam: the gradient taken at the worst nearby
    # weights, for flat minima that carry to unseen setups; twice the training time). 0 = plain steps:
    # 0.05 ranked NUAA left out whole worse on both seeds (docs/training.md).
    sam_rho: float = 0.0
    # Train a 3-way softmax (print / replay / real); exported merged to (fake, real).
    three_way: bool = False
    # Probability that a training sample gets a rectangle of noise in each tile (augment.erase_rectangles);
    # 0.5 measured worse on unseen people (docs/training.md), so off.
    erase_p: float = 0.0
    # Mixup: each training sample blended with another, weight ~ Beta(alpha, alpha), targets alike; 0 = off
    # (0.4 moved errors between sets and ranked worse: docs/training.md).
    mixup_alpha: float = 0.0
    # Probability that a training sample gets simulated frame edges near its face, for both labels
    # (augment.frame_edges: against "black border = attack"); 0 = off: 0.5 measured worse on unseen
    # people, NUAA's prints most (docs/training.md).
    edge_p: float = 0.0
    # Probability of those frame edges for real faces only, on top of edge_p: in the data black padding
    # goes with attacks (close-up replays), and close-up real selfies are called fake (MODEL_CARD.md);
    # drawn on real faces alone it no longer tells the label, while attacks keep the paper edges and
    # hands that edge_p blacked out for both. 0 = off: 0.5 rescued the held-out selfie video but ranked
    # Replay-Attack and NUAA left out whole worse (docs/training.md).
    real_edge_p: float = 0.0
    # Real-face frame edges at a rate per source instead (real_edge_rates): where a source's attacks
    # carry more black padding than its real faces, its real faces get edges until the means match;
    # a fixed real_edge_p over-corrects where few padded attacks are left (Replay-Attack left out
    # whole was ranked inverted with 0.5). Off: it ranked NUAA left out whole worse (docs/training.md).
    real_edge_by_source: bool = False
    # Stochastic weight averaging: the exported weights are the mean of the weights after every
    # training step of this last share of the steps (0 = off; batch-norm statistics measured anew).
    # 0.5 ranked worse on unseen people (docs/training.md), so off.
    average_last: float = 0.0
    # With averaging on, the cosine ends where averaging starts, at this share of the initial learning
    # rate, which then stays constant so the averaged weights spread along the valley (SWA).
    average_lr: float = 0.25
    # Ensemble distillation: models of this recipe with these seeds are trained first (the teachers);
    # the exported model (seed `seed`) then learns their averaged probabilities on its own augmented
    # samples, mixed with the true labels: one network's cost for (part of) an ensemble's gain. [] = off:
    # worse than a plain seed on the folds it reached (docs/training.md).
    distill_seeds: list[int] = field(default_factory=list)
    # Share of each training target that is the teachers' probability (the rest: the true label).
    distill_weight: float = 0.5
    # Members that see only some of the crop tiles: per entry (a subset of `scales`), `ensemble` members
    # (seeds seed, seed + 1, ...) see just those tiles; the exported graph averages them all.
    # [] = every member sees every tile.
    member_scales: list[list[float]] = field(default_factory=list)

    def drawing_p(self, data: Examples) -> dict[str, float | np.ndarray]:
        """The probabilities of augment.DRAWINGS (edge_p, mask_p, screen_p, bystander_p, tone_p, light_p,
        backlight_p) this recipe asks for.

        One that depends on the example (real_edge_p, real_edge_by_source) is an array over `data`.
        """
        p: dict[str, float | np.ndarray] = {name: getattr(self, name) for name in DRAWINGS}
        if self.real_edge_by_source:
            p["edge_p"] = np.minimum(1.0, self.edge_p + real_edge_rates(data))
        elif self.real_edge_p > 0:
            p["edge_p"] = np.where(data.y == 1, min(1.0, self.edge_p + self.real_edge_p), self.edge_p)
        return p

    @property
    def member_architectures(self) -> set[str]:
        """The architectures of every member trained: the first's, the partners', the extra member's."""
        return {self.architecture, self.partner_architecture or self.architecture} | (
            {self.extra_architecture} if self.extra_architecture else set())

    def __post_init__(self) -> None:
        if self.distill_seeds and self.three_way:
            raise ValueError("distillation needs two-way targets: --distill-seeds and --three-way do not go together")
        for subset in self.member_scales:
            tile_channels(self.scales, subset)  # ValueError naming the scales when not a subset
        if self.member_scales and self.distill_seeds:
            raise ValueError("--member-scales and --distill-seeds do not go together")
        if self.input_standardise and self.architecture != "mobile":
            raise ValueError("--input-standardise is built for the mobile architecture only")
        if self.freeze_stem and self.architecture not in PRETRAINED_STEM_ARCHITECTURES:
            raise ValueError(f"--freeze-stem needs an architecture on res10's stem ({', '.join(PRETRAINED_STEM_ARCHITECTURES)})")
        if self.spectrum_weight > 0:  # its head needs a block of the right width: refuse now, before any data is gathered
            from training.livenessnet import build, with_spectrum_head

            for architecture in self.member_architectures:
                with_spectrum_head(build(architecture, self.size, 3 * len(self.scales)))
        if self.real_edge_by_source and self.real_edge_p > 0:
            raise ValueError("--real-edge-by-source sets the real faces' edge rates itself: leave out --real-edge-p")
        auxiliary = (self.real_compact_weight, self.spectrum_weight, self.real_adversary_weight, self.pixel_weight)
        if sum(weight > 0 for weight in auxiliary) > 1:
            raise ValueError("--real-compact-weight, --spectrum-weight, --real-adversary-weight and --pixel-weight "
                             "do not go together")
        if self.sam_rho > 0 and max(auxiliary) > 0:
            raise ValueError("--sam-rho trains the classifier alone: leave out --real-compact-weight, --spectrum-weight, "
                             "--real-adversary-weight and --pixel-weight")
        if self.pixel_weight > 0 and "livenessnet" in self.member_architectures:
            raise ValueError("--pixel-weight needs separable blocks: not --architecture livenessnet")
        # res10_deep_context is left out (its first tile's block after the stem would not be shared);
        # it can be a res10 member's partner instead (partner_architecture).
        if self.share_tuned_stem and (self.architecture not in ("res10", "res10_deep") or self.freeze_stem
                                      or self.member_scales):
            raise ValueError("--share-tuned-stem needs --architecture res10 or res10_deep, without --freeze-stem or --member-scales")
        if self.mixstyle_p > 0:
            from training.livenessnet import MIXSTYLE_ARCHITECTURES

            if not self.member_architectures <= set(MIXSTYLE_ARCHITECTURES):
                raise ValueError(f"--mixstyle-p needs every member's architecture to be {' or '.join(MIXSTYLE_ARCHITECTURES)}")
        if self.cdc_theta > 0 or self.partner_cdc_theta > 0:
            from training.livenessnet import CDC_ARCHITECTURES
        if self.cdc_theta > 0:
            if not self.member_architectures <= set(CDC_ARCHITECTURES):
                raise ValueError(f"--cdc-theta needs every member's architecture among {', '.join(CDC_ARCHITECTURES)}")
        if self.partner_cdc_theta > 0:
            if self.ensemble < 2 or self.cdc_theta > 0 or self.member_scales:
                raise ValueError("--partner-cdc-theta needs --ensemble 2 or more, without --cdc-theta or --member-scales")
            if (self.partner_architecture or self.architecture) not in CDC_ARCHITECTURES:
                raise ValueError(f"--partner-cdc-theta needs a partner architecture of {', '.join(CDC_ARCHITECTURES)}")
        if self.partner_architecture and (not self.share_tuned_stem or self.architecture != "res10"
                                          or self.partner_architecture not in PARTNER_ARCHITECTURES):
            raise ValueError(f"--partner-architecture needs --architecture res10 --share-tuned-stem and one of "
                             f"{', '.join(PARTNER_ARCHITECTURES)}")
        if self.extra_architecture and (self.extra_architecture not in INDEPENDENT_PARTNERS or self.member_scales):
            raise ValueError(f"--extra-architecture needs one of {', '.join(INDEPENDENT_PARTNERS)}, without --member-scales")
        if self.frozen_probe and (self.frozen_probe not in PROBE_STEMS or self.three_way or self.input_standardise):
            raise ValueError(f"--frozen-probe needs one of {', '.join(PROBE_STEMS)}, two-way targets and the plain "
                             "[-1, 1] input (not --three-way, not --input-standardise)")
        if self.probe_gate and not self.frozen_probe:
            raise ValueError("--probe-gate gates a probe: give --frozen-probe too")
        if self.probe_balance_setups and not self.frozen_probe:
            raise ValueError("--probe-balance-setups weighs the probe's setups: give --frozen-probe too")
        if self.probe_weight and (not self.frozen_probe or not 0.0 < self.probe_weight < 1.0):
            raise ValueError(f"--probe-weight needs --frozen-probe and a share in (0, 1), got {self.probe_weight}")

    @property
    def member_count(self) -> int:
        """How many trained networks the model averages (the frozen probe not counted)."""
        return len(self.member_scales or [self.scales]) * max(1, self.ensemble) + (1 if self.extra_architecture else 0)


class WeightAverage:
    """Running mean of a Keras model's weights after each step from `start_step` on (batch-norm statistics measured anew).

    Averaging along the end of training lands in a flatter region of the loss, which is reported to
    carry better to unseen domains (SWA; SWAD for domain generalisation) at no inference cost.
    """

    def __init__(self, model, start_step: int) -> None:
        self.model = model
        self.start_step = start_step
        self.steps = 0
        self.count = 0
        self.mean: list[np.ndarray] = []

    def update(self) -> None:
        """Call after every training step."""
        self.steps += 1
        if self.steps <= self.start_step:
            return
        self.count += 1
        weights = self.model.get_weights()
        if not self.mean:
            self.mean = [np.array(w, dtype=np.float64) for w in weights]
            return
        for mean, w in zip(self.mean, weights):
            mean += (w - mean) / self.count

    def apply(self, x: np.ndarray) -> None:
        """Give the model the averaged weights, then batch-norm statistics measured with them on inputs x.

        Averaged statistics do not match averaged weights (SWA re-estimates them the same way).
        """
        if self.mean:
            self.model.set_weights([m.astype(w.dtype) for m, w in zip(self.mean, self.model.get_weights())])
            recompute_batch_norm(self.model, x)


def recompute_batch_norm(model, x: np.ndarray, batch_size: int = 256) -> None:
    """Set every batch-norm layer's moving statistics to their mean over the batches of x, in training mode."""
    import keras

    def batch_norms(layer) -> list:
        inner = [found for child in getattr(layer, "layers", []) for found in batch_norms(child)]
        return inner + ([layer] if isinstance(layer, keras.layers.BatchNormalization) else [])

    norms = batch_norms(model)
    momenta = [norm.momentum for norm in norms]
    # moving = momentum * moving + (1 - momentum) * batch; momentum (k - 1) / k at batch k gives the running mean
    for k, start in enumerate(range(0, len(x), batch_size), 1):
        for norm in norms:
            norm.momentum = (k - 1) / k
        model(x[start : start + batch_size], training=True)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def configure_tensorflow(seed: int) -> None:
    """Deterministic, two-thread TensorFlow (see shared docs/stack.md), imported quietly."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # oneDNN INFO lines ignore TF_CPP_MIN_LOG_LEVEL
    try:
        import tensorflow as tf
    finally:
        os.dup2(stderr, 2)
        os.close(devnull)
        os.close(stderr)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process: the first call's settings hold
    import keras

    keras.utils.set_random_seed(seed)


def normalise(x: np.ndarray) -> np.ndarray:
    """Crop stacks (pixel values 0..255) -> the model's float input ((x / 255 - mean) / std per channel)."""
    channels = x.shape[-1]
    mean = np.tile(np.asarray(MEAN, np.float32), channels // 3)
    std = np.tile(np.asarray(STD, np.float32), channels // 3)
    return ((x.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def sampling_weights(data: Examples, config: TrainConfig) -> np.ndarray:
    """Per-sample sampling probability: classes balanced overall, each class's sources by size ** source_power,
    tight-crop sources scaled by crop_weight."""
    weights = np.zeros(len(data), dtype=np.float64)
    for label in (0, 1):
        in_class = data.y == label
        groups = sorted(set(data.group[in_class].tolist()))
        shares = {g: float(np.sum(in_class & (data.group == g))) ** config.source_power for g in groups}
        total = sum(shares.values())
        for g in groups:
            mask = in_class & (data.group == g)
            weights[mask] = 0.5 * shares[g] / total / mask.sum()
    weights[data.kind == "crop"] *= config.crop_weight
    return weights / weights.sum()


def spectrum_targets(x: np.ndarray, side: int) -> np.ndarray:
    """(N, side, side, 1) log-magnitude Fourier spectra of the first (closest) crop tile, each scaled to [0, 1]."""
    grey = x[..., 0:3] @ np.array([0.299, 0.587, 0.114], np.float32)
    spectrum = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(grey), axes=(1, 2)))).astype(np.float32)
    n, size = spectrum.shape[0], spectrum.shape[1]
    pooled = spectrum.reshape(n, side, size // side, side, size // side).mean(axis=(2, 4))
    low, high = pooled.min(axis=(1, 2), keepdims=True), pooled.max(axis=(1, 2), keepdims=True)
    return ((pooled - low) / np.maximum(high - low, 1e-6))[..., None]


def pixel_targets(y: np.ndarray, side: int) -> np.ndarray:
    """(N, side, side, 1) maps of each sample's real share (the last class; a mixed sample by its share)."""
    return np.broadcast_to(y[:, -1, None, None, None], (len(y), side, side, 1)).astype(np.float32)


def real_compactness(targets, features):
    """Mean squared distance of the batch's real faces' unit features from their mean (Keras loss).

    `targets`: the classification targets, real last (fake, real or print, replay, real); a mixed
    sample counts by its share of real.
    """
    import keras

    real = targets[:, -1:]
    count = keras.ops.sum(real) + 1e-6
    centre = keras.ops.sum(features * real, axis=0, keepdims=True) / count
    return keras.ops.sum(real * keras.ops.sum(keras.ops.square(features - centre), axis=1, keepdims=True)) / count


def real_source_loss(targets, probabilities):
    """Cross-entropy of the source adversary over the batch's real faces only (Keras loss).

    `targets`: one-hot sources times each sample's share of real (zero rows for attacks), so the
    adversary never learns, nor pushes on, where an attack comes from.
    """
    import keras

    count = keras.ops.sum(targets) + 1e-6
    return -keras.ops.sum(targets * keras.ops.log(keras.ops.clip(probabilities, 1e-7, 1.0))) / count


def real_source_targets(example_sources: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(N, sources) one-hot source of every example times its share of real (`targets`' last column), and the sources.

    Only sources with real faces count: the adversary is trained on real faces alone.
    """
    sources = np.unique(example_sources[targets[:, -1] > 0])
    onehot = (example_sources[:, None] == sources[None, :]).astype(np.float32)
    return onehot * targets[:, -1:], sources.tolist()


def reversal_strength(weight: float, epoch: int, epochs: int) -> float:
    """The gradient reversal's strength in an epoch: `weight` ramped by 2 / (1 + exp(-10 p)) - 1 at the epoch's middle p.

    The ramp (Ganin and Lempitsky's) keeps the adversary's noisy early gradients out of the network.
    """
    progress = (epoch + 0.5) / epochs
    return weight * (2.0 / (1.0 + np.exp(-10.0 * progress)) - 1.0)


def class_targets(data: Examples, three_way: bool) -> np.ndarray:
    """Per-sample target distributions: (fake, real), or (print, replay, real) for the 3-way model.

    Masks and cut-outs count as prints (paper); attacks of unknown instrument are half and half.
    """
    if not three_way:
        return np.eye(2, dtype=np.float32)[data.y]
    targets = np.zeros((len(data), 3), dtype=np.float32)
    targets[data.y == 1, 2] = 1.0
    fake = data.y == 0
    is_print = fake & np.isin(data.attack, ["print", "mask"])
    is_replay = fake & (data.attack == "replay")
    targets[is_print, 0] = 1.0
    targets[is_replay, 1] = 1.0
    targets[fake & ~is_print & ~is_replay, :2] = 0.5
    return targets


def damage_rates(data: Examples, degrade_p: tuple[float, float]) -> np.ndarray:
    """Per-sample probability of quality damage that takes each source's sharpness bias away.

    In every group of sources the label with the sharper face tiles (median of
    training.sharpness) gets the higher of the two `degrade_p` rates, the other label the lower;
    a group with one label only gets their mean.
    """
    from training.sharpness import sharpness

    low, high = sorted(degrade_p)
    values = sharpness(data)
    rates = np.full(len(data), (low + high) / 2.0)
    for group in set(data.group.tolist()):
        real, attack = (data.group == group) & (data.y == 1), (data.group == group) & (data.y == 0)
        if real.any() and attack.any():
            real_sharper = np.median(values[real]) >= np.median(values[attack])
            rates[real], rates[attack] = (high, low) if real_sharper else (low, high)
    return rates


def real_edge_rates(data: Examples) -> np.ndarray:
    """Per-example probability of frame edges that takes each source's padding bias away.

    In every group whose attacks carry more black padding in the widest crop tile than its real
    faces (training.padding), real faces get augment.frame_edges at the rate that makes the two
    means equal, as far as edges on every real face reach (at most 1); attacks, and groups where
    padding does not point to attacks, get none.
    """
    widest = int(np.argmax(data.scales))
    padding = padding_shares(data)[:, widest]
    rates = np.zeros(len(data))
    for group in sorted(set(data.group.tolist())):
        real, attack = (data.group == group) & (data.y == 1), (data.group == group) & (data.y == 0)
        if not real.any() or not attack.any() or padding[attack].mean() <= padding[real].mean():
            continue
        edged = data.x[real].copy()
        frame_edges(edged, np.arange(len(edged)), data.scales, np.random.default_rng(0))
        gain = padding_shares(edged)[:, widest].mean() - padding[real].mean()
        rates[real] = min(1.0, (padding[attack].mean() - padding[real].mean()) / gain) if gain > 0 else 1.0
    return rates


def augmented_epoch(data: Examples, probabilities: np.ndarray, count: int, rng: np.random.Generator,
                    damage_p: np.ndarray, targets: np.ndarray | None = None,
                    erase_p: float = 0.0, mixup_alpha: float = 0.0,
                    drawing_p: Mapping[str, float | np.ndarray] | None = None,
                    recapture_p: float = 0.0, recaptured_target: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`count` samples drawn by `probabilities`, augmented, normalised; their targets (default one-hot fake/real).

    `damage_p`: each example's probability of quality damage (augment.damage_by_label or damage_rates).
    `drawing_p`: probabilities of augment.DRAWINGS by name (TrainConfig.drawing_p): a number, or an
    array with one per example of `data`.
    `recapture_p`: probability that a drawn real face becomes a simulated recapture of itself
    (augment.screen_recaptures), whose target is then `recaptured_target` (default: one-hot fake).
    """
    index = rng.choice(len(data), size=count, p=probabilities)
    recaptured = np.zeros(count, dtype=bool)

    def drawings_of(batch: np.ndarray) -> dict[str, float | np.ndarray]:
        return {name: p[batch] if np.ndim(p) else p for name, p in (drawing_p or {}).items()}

    def stacks(start: int) -> np.ndarray:
        batch = index[start : start + 512]
        if recapture_p <= 0:  # no draws, so the recipes without it stay as they were
            return data.x[batch]
        chosen = np.nonzero((data.y[batch] == 1) & (rng.random(len(batch)) < recapture_p))[0]
        recaptured[start + chosen] = True
        x = data.x[batch].copy()
        screen_recaptures(x, chosen, data.scales, rng)
        return x

    x = np.concatenate([normalise(augment_batch(stacks(i), damage_p[index[i : i + 512]], rng, erase_p, data.scales,
                                                **drawings_of(index[i : i + 512])))
                        for i in range(0, count, 512)])
    y = (np.eye(2, dtype=np.float32)[data.y] if targets is None else targets)[index]
    if recaptured.any():
        y[recaptured] = np.eye(y.shape[1], dtype=np.float32)[0] if recaptured_target is None else recaptured_target
    return mix_samples(x, y, rng, mixup_alpha) if mixup_alpha > 0 else (x, y)


def mix_samples(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Mixup: sample i becomes w * sample i + (1 - w) * sample perm(i), targets alike, w ~ Beta(alpha, alpha)."""
    partner = rng.permutation(len(x))
    weight = rng.beta(alpha, alpha, len(x)).astype(np.float32)
    mixed_x = weight[:, None, None, None] * x + (1.0 - weight[:, None, None, None]) * x[partner]
    return mixed_x.astype(np.float32), (weight[:, None] * y + (1.0 - weight[:, None]) * y[partner]).astype(np.float32)


def teacher_config(config: TrainConfig, seed: int) -> TrainConfig:
    """The recipe of one distillation teacher: `config` itself with that seed, a single plain model."""
    return replace(config, seed=seed, ensemble=1, flip_average=False, distill_seeds=[])


def train_teachers(train: Examples, config: TrainConfig, verbose: int = 1) -> list:
    """The distillation teachers of `config` (one per seed in config.distill_seeds), trained on `train`."""
    teachers = []
    for seed in config.distill_seeds:
        if verbose:
            print(f"teacher seed {seed}", file=sys.stderr, flush=True)
        teachers.append(_train_one(train, teacher_config(config, seed), None, verbose)[0])
    return teachers


def distilled_targets(y: np.ndarray, x: np.ndarray, teachers: list, weight: float) -> np.ndarray:
    """(1 - weight) * targets y + weight * the teachers' mean (fake, real) probabilities on the inputs x."""
    taught = np.mean([teacher.predict(x, batch_size=256, verbose=0) for teacher in teachers], axis=0)
    return ((1.0 - weight) * y + weight * taught).astype(np.float32)


def train_model(train: Examples, config: TrainConfig, validation: Examples | None = None, verbose: int = 1,
                teachers: list | None = None):
    """Fit a fresh model (or `config.ensemble` of them, combined); returns (keras model, history of the first).

    With config.distill_seeds, `teachers` (trained here when not given) supply part of the targets.
    With config.frozen_probe, the probe is fitted last and weighs as one more member, or
    config.probe_weight of the score (where its gate opens, when gated). Deterministic for a given config.
    """
    model, history = _train_networks(train, config, validation, verbose, teachers)
    if not config.frozen_probe:
        return model, history
    probe = train_probe(train, config.frozen_probe, gate=config.probe_gate, verbose=verbose,
                        balance_setups=config.probe_balance_setups)
    weight = config.probe_weight or 1.0 / (config.member_count + 1)
    return with_probe(model, probe, weight=weight, example=train.x[:2]), history


def _train_networks(train: Examples, config: TrainConfig, validation: Examples | None, verbose: int,
                    teachers: list | None):
    """train_model without the frozen probe."""
    if config.distill_seeds and teachers is None:
        teachers = train_teachers(train, config, verbose)
    if config.ensemble <= 1 and not config.flip_average and not config.member_scales and not config.extra_architecture:
        return _train_one(train, config, validation, verbose, teachers)
    subsets = config.member_scales or [list(config.scales)]
    members, channels, first_history = [], [], None
    count = len(subsets) * max(1, config.ensemble)
    for subset in subsets:
        tiles, tiles_validation = train.tiles(subset), validation.tiles(subset) if validation is not None else None
        for i in range(max(1, config.ensemble)):
            stem_from = members[0] if config.share_tuned_stem and members else None
            architecture = config.partner_architecture if stem_from is not None and config.partner_architecture else config.architecture
            if architecture in INDEPENDENT_PARTNERS:
                stem_from = None
            member_config = replace(config, seed=config.seed + i, ensemble=1, flip_average=False, member_scales=[],
                                    scales=[float(s) for s in subset], share_tuned_stem=False, partner_architecture="",
                                    architecture=architecture, partner_cdc_theta=0.0,
                                    cdc_theta=config.partner_cdc_theta if members and config.partner_cdc_theta > 0 else config.cdc_theta,
                                    # a deep-context partner freezes only its first stage (_train_one)
                                    freeze_stem=config.freeze_stem or (stem_from is not None and architecture == config.architecture))
            if verbose:
                print(f"member {len(members) + 1}/{count} ({member_config.architecture}, seed {member_config.seed}, scales {subset})",
                      file=sys.stderr, flush=True)
            model, history = _train_one(tiles, member_config, tiles_validation, verbose, teachers, stem_from)
            members.append(model)
            channels.append(tile_channels(config.scales, subset))
            first_history = first_history or history
    if config.extra_architecture:
        extra_config = replace(config, seed=config.seed + max(1, config.ensemble), ensemble=1, flip_average=False,
                               share_tuned_stem=False, partner_architecture="", extra_architecture="", partner_cdc_theta=0.0,
                               architecture=config.extra_architecture, freeze_stem=False)
        if verbose:
            print(f"member {len(members) + 1}/{count + 1} ({extra_config.architecture}, seed {extra_config.seed}, extra)",
                  file=sys.stderr, flush=True)
        members.append(_train_one(train, extra_config, validation, verbose, teachers)[0])
    mixed = bool(config.partner_architecture)  # members of two architectures share only res10's first stage, or nothing
    return combine(members, config.flip_average, train.x[:2], channels if config.member_scales else None,
                   shared_stem=(config.freeze_stem or config.share_tuned_stem) and not config.member_scales and not mixed,
                   shared_first_stage=mixed and config.partner_architecture not in INDEPENDENT_PARTNERS,
                   independent=1 if config.extra_architecture else 0), first_history


def combine(members: list, flip_average: bool, example: np.ndarray, channels: list[list[int]] | None = None,
            shared_stem: bool = False, shared_first_stage: bool = False, independent: int = 0):
    """One model averaging P(fake), P(real) over `members` and, with flip_average, over mirrored crops too.

    With `channels`, member i sees only those channels of the input (its crop tiles). With
    `shared_stem` (res10 members trained with the stem frozen, so all hold the same one), the stem
    runs once per view and each member adds only its blocks: the same numbers at a fraction of the cost.
    `shared_first_stage` does the same for members of different architectures that hold the same
    res10 first stage (livenessnet.split_at_first_stage): it runs once per tile of each view. The
    last `independent` members share nothing and run whole on each view (an extra architecture).
    """
    import keras
    from keras import layers

    from training.livenessnet import INPUT_NAME, split_at_first_stage, split_at_stem

    inputs = keras.Input(example.shape[1:], name=INPUT_NAME)
    views = [inputs]
    if flip_average:
        views.append(layers.Lambda(lambda t: keras.ops.flip(t, axis=2), name="mirror")(inputs))
    for i, member in enumerate(members):
        member.name = f"member_{i}"  # nested models need unique names
    extras = members[len(members) - independent:]
    members = members[:len(members) - independent]
    outputs = []
    if shared_stem:
        stem = split_at_stem(members[0])[0]
        stem.name = "shared_stem"
        blocks = [split_at_stem(member)[1] for member in members]
        for i, member_blocks in enumerate(blocks):
            member_blocks.name = f"member_{i}_blocks"
        outputs = [member_blocks(features) for features in map(stem, views) for member_blocks in blocks]
    elif shared_first_stage:
        first = split_at_first_stage(members[0])[0]
        first = keras.Model(first.input, first.output, name="shared_first_stage")
        rests = [split_at_first_stage(member)[1] for member in members]
        for i, rest in enumerate(rests):
            rest.name = f"member_{i}_after_first_stage"
        for j, view in enumerate(views):
            tiles = [layers.Lambda(lambda t, k=k: t[..., 3 * k:3 * k + 3], name=f"view_{j}_tile_{k}")(view)
                     for k in range(example.shape[-1] // 3)]
            features = [first(tile) for tile in tiles]
            outputs.extend(rest(features) for rest in rests)
    else:
        for i, member in enumerate(members):
            for j, view in enumerate(views):
                if channels is not None:  # the default argument binds this member's indices, not the loop's last
                    view = layers.Lambda(lambda t, c=channels[i]: keras.ops.take(t, c, axis=-1), name=f"tiles_{i}_{j}")(view)
                outputs.append(member(view))
    outputs.extend(extra(view) for view in views for extra in extras)
    combined = keras.Model(inputs, layers.Average(name="probabilities")(outputs) if len(outputs) > 1 else outputs[0],
                           name="liveness_ensemble")
    combined.predict(normalise(example), verbose=0)  # Keras exports only models that have been called
    return combined


def _train_one(train: Examples, config: TrainConfig, validation: Examples | None = None, verbose: int = 1,
               teachers: list | None = None, stem_from=None):
    """Fit one fresh model (taught by `teachers` when config.distill_seeds); returns (keras model, history dict).

    `stem_from`: a trained res10-variant model whose stem weights this one starts from (kept frozen
    by config.freeze_stem).
    """
    configure_tensorflow(config.seed)
    import keras

    from training.livenessnet import (GRADIENT_REVERSAL, SPECTRUM_SIZE, build, merge_attack_classes, with_pixel_head,
                                      with_pooled_features, with_source_adversary, with_spectrum_head)
    from training.metrics import roc_auc

    model = build(config.architecture, config.size, train.x.shape[-1], classes=3 if config.three_way else 2,
                  standardise=config.input_standardise, freeze_stem=config.freeze_stem, mixstyle_p=config.mixstyle_p,
                  cdc_theta=config.cdc_theta)
    if stem_from is not None:
        from training.pretrained import FIRST_STAGE_NAME, STEM_NAME

        if FIRST_STAGE_NAME in {layer.name for layer in model.layers}:  # a partner of another architecture
            first_stage = model.get_layer(FIRST_STAGE_NAME)
            first_stage.set_weights(stem_from.get_layer(STEM_NAME).get_weights())
            first_stage.trainable = False  # its batch norms keep member 1's statistics too
        else:
            model.get_layer(STEM_NAME).set_weights(stem_from.get_layer(STEM_NAME).get_weights())
    two_way = merge_attack_classes(model) if config.three_way else model  # what is validated and exported
    steps = config.epochs * (config.samples_per_epoch // config.batch_size)
    average_start = int(round(steps * (1.0 - config.average_last)))  # steps before averaging begins
    if config.average_last > 0:  # cosine down to average_lr before the averaged steps, constant during them
        schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, max(1, average_start), alpha=config.average_lr)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, warmup_target=None)
    classification = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    train_targets = class_targets(train, config.three_way)
    classes = train_targets.shape[1]
    fitted = model  # what model.fit trains: the model itself, or it with a training-only head
    # Auxiliary heads with a weighted loss of their own: (weight, training model, loss); at most one is on (TrainConfig).
    weighted_heads = [(config.spectrum_weight, with_spectrum_head, keras.losses.MeanSquaredError()),
                      (config.pixel_weight, with_pixel_head, keras.losses.BinaryCrossentropy()),
                      (config.real_compact_weight, with_pooled_features, real_compactness)]
    head_weight, with_head, head_loss = next((head for head in weighted_heads if head[0] > 0), (0.0, None, None))
    if with_head is not None:
        fitted = with_head(model)
        fitted.compile(
            optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
            loss=[classification, head_loss],
            loss_weights=[1.0, head_weight],
            metrics=[["accuracy"], []],
        )
    elif config.real_adversary_weight > 0:
        source_targets, sources = real_source_targets(train.source, train_targets)
        # drawn (and mixed) with the class targets as one array, split again in the epoch loop
        train_targets = np.concatenate([train_targets, source_targets], axis=1)
        fitted = with_source_adversary(model, len(sources))
        fitted.compile(  # the reversal's strength, not a loss weight, sets how hard the network is pushed
            optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
            loss=[classification, real_source_loss],
            metrics=[["accuracy"], []],
        )
    else:
        if config.sam_rho > 0:
            from training.sam import SharpnessAwareModel

            fitted = SharpnessAwareModel(model, config.sam_rho)
        fitted.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
                       loss=classification, metrics=["accuracy"])
    rng = np.random.default_rng(config.seed)
    probabilities = sampling_weights(train, config)
    damage_p = damage_rates(train, config.degrade_p) if config.degrade_by_source else damage_by_label(train.y, config.degrade_p)
    drawing_p = config.drawing_p(train)
    recaptured_target = np.zeros(train_targets.shape[1], dtype=np.float32)  # a replay: (fake, real) or (print, replay, real)
    recaptured_target[1 if config.three_way else 0] = 1.0
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": [], "val_auc": []}
    callbacks = []
    average = WeightAverage(model, average_start) if config.average_last > 0 else None
    if average is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: average.update()))
    val_x = normalise(validation.x) if validation is not None and len(validation) else None
    for epoch in range(config.epochs):
        started = time.time()
        x, y = augmented_epoch(train, probabilities, config.samples_per_epoch, rng, damage_p, train_targets,
                               config.erase_p, config.mixup_alpha, drawing_p, config.recapture_p, recaptured_target)
        y, source_y = y[:, :classes], y[:, classes:]
        if config.distill_seeds and teachers:
            y = distilled_targets(y, x, teachers, config.distill_weight)
        targets = y
        if config.spectrum_weight > 0:
            targets = (y, spectrum_targets(x, SPECTRUM_SIZE))
        elif config.pixel_weight > 0:
            targets = (y, pixel_targets(y, fitted.outputs[1].shape[1]))
        elif config.real_compact_weight > 0:
            targets = (y, y)  # the compactness loss reads which samples are real from the class targets
        elif config.real_adversary_weight > 0:
            targets = (y, source_y)
            fitted.get_layer(GRADIENT_REVERSAL).strength.assign(
                reversal_strength(config.real_adversary_weight, epoch, config.epochs))
        fit = fitted.fit(x, targets, batch_size=config.batch_size, epochs=epoch + 1, initial_epoch=epoch, shuffle=False, verbose=0,
                         callbacks=callbacks)
        history["loss"].append(float(fit.history["loss"][-1]))
        accuracy = next(value for key, value in fit.history.items() if key.endswith("accuracy"))
        history["accuracy"].append(float(accuracy[-1]))
        line = f"epoch {epoch + 1}/{config.epochs}  loss {history['loss'][-1]:.4f}  acc {history['accuracy'][-1]:.3f}"
        for key in sorted(key for key in fit.history if key.endswith("_loss") and key != "loss"):  # auxiliary heads' losses
            line += f"  {key} {fit.history[key][-1]:.4f}"
        if val_x is not None:
            p = two_way.predict(val_x, batch_size=256, verbose=0)
            target = np.eye(2, dtype=np.float32)[validation.y]
            history["val_loss"].append(float(np.mean(-np.sum(target * np.log(np.clip(p, 1e-7, 1.0)), axis=1))))
            history["val_accuracy"].append(float(np.mean(np.argmax(p, axis=1) == validation.y)))
            history["val_auc"].append(roc_auc(validation.y, p[:, 1]))
            line += f"  val_loss {history['val_loss'][-1]:.4f}  val_acc {history['val_accuracy'][-1]:.3f}  val_auc {history['val_auc'][-1]:.3f}"
        if verbose:
            print(f"{line}  ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
    if average is not None:
        average.apply(x[:2048])  # the last epoch's augmented samples
    if fitted is not two_way:
        two_way.predict(x[:2], verbose=0)  # Keras exports only models that have been called themselves
    return two_way, history


def predict(model, x_uint8: np.ndarray) -> np.ndarray:
    """P(real) from a Keras model for uint8 RGB crop stacks (inference mode)."""
    return model.predict(normalise(x_uint8), batch_size=256, verbose=0)[:, 1]


def save_plot(history: dict[str, list[float]], path: Path) -> None:
    """Training curves (loss and accuracy; validation where there was any) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(epochs, history["loss"], label="train loss")
    axes[1].plot(epochs, history["accuracy"], label="train accuracy")
    if history.get("val_loss"):
        axes[0].plot(epochs, history["val_loss"], label="validation loss (unseen sources)")
        axes[1].plot(epochs, history["val_accuracy"], label="validation accuracy")
        axes[1].plot(epochs, history["val_auc"], label="validation ROC AUC")
    for axis, title in zip(axes, ("loss", "accuracy")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def data_summary(data: Examples) -> dict[str, dict[str, int]]:
    """Faces per source and label (detector-box crops, box-jitter copies not counted)."""
    out: dict[str, dict[str, int]] = {}
    base = data.variant == 0
    for source in sorted(set(data.source.tolist())):
        mask = base & (data.source == source)
        out[source] = {"real": int(np.sum(mask & (data.y == 1))), "fake": int(np.sum(mask & (data.y == 0)))}
    return out


def export_onnx(model, path: Path, metadata, parity_crops: np.ndarray) -> float:
    """Export with model.export(format="onnx"), embed metadata, and check parity on real crops.

    Returns the max abs difference of P(real) between Keras and onnxruntime (through
    LivenessModel, exactly as the classify stage runs it); raises above PARITY_LIMIT.
    """
    from liveness.metadata import write_metadata
    from liveness.model import LivenessModel

    path.parent.mkdir(parents=True, exist_ok=True)
    stdout = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # tf2onnx prints its conversion log to stdout
    try:
        model.export(str(path), format="onnx", verbose=False)
    finally:
        os.dup2(stdout, 1)
        os.close(devnull)
        os.close(stdout)
    write_metadata(path, metadata)
    runner = LivenessModel(path, threads=1)
    onnx_scores = runner.predict_crops(parity_crops)
    keras_scores = predict(model, parity_crops)
    difference = float(np.max(np.abs(onnx_scores - keras_scores)))
    if not difference <= PARITY_LIMIT:
        raise RuntimeError(f"ONNX parity check failed: max abs difference {difference:.2e} > {PARITY_LIMIT:g}")
    return difference


def split_by_group(data: Examples, validation_groups: Sequence[str]) -> tuple[Examples, Examples]:
    """(train, validation): validation = the named groups, detector boxes only (no jitter copies)."""
    held = np.isin(data.group, list(validation_groups))
    return data.subset(~held), data.subset(held & (data.variant == 0))


def probability(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability (0 to 1)")
    return value


def non_negative(text: str) -> float:
    """argparse type: a number of at least 0."""
    value = float(text)
    if value < 0.0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The training-recipe options `train` and `evaluate --loso` share.

    Defaults: the recipe of one mobile network (model 1.0); the shipped 1.4 adds --architecture res10
    --size 56 --ensemble 2 --share-tuned-stem --partner-architecture res10_deep_context (the Makefile's RECIPE).
    """
    recipe = parser.add_argument_group("recipe (train; evaluate --loso without --model)")
    recipe.add_argument("--architecture", default=TrainConfig.architecture,
                        choices=("mobile", "livenessnet", *PRETRAINED_STEM_ARCHITECTURES, *INDEPENDENT_PARTNERS))
    recipe.add_argument("--size", type=int, default=TrainConfig.size, help="crop size (default: %(default)s)")
    recipe.add_argument("--scales", type=float, nargs="+", default=[1.5, 2.7], help="crop scales, x the face box; 0 = a size x size patch of native pixels (default: %(default)s)")
    recipe.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    recipe.add_argument("--samples-per-epoch", type=int, default=TrainConfig.samples_per_epoch)
    recipe.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    recipe.add_argument("--weight-decay", type=non_negative, default=TrainConfig.weight_decay,
                        help="AdamW's decoupled weight decay (default: %(default)s)")
    recipe.add_argument("--seed", type=int, default=TrainConfig.seed)
    recipe.add_argument("--source-power", type=non_negative, default=TrainConfig.source_power,
                        help="a source's share of each class's sampling weight grows with (its size) ** this "
                             "(0 = every source alike, 1 = every face alike; default: %(default)s)")
    recipe.add_argument("--crop-weight", type=non_negative, default=TrainConfig.crop_weight,
                        help="sampling weight of tight-crop sources relative to full-frame ones (default: %(default)s)")
    recipe.add_argument("--spectrum-weight", type=float, default=TrainConfig.spectrum_weight,
                        help="weight of the auxiliary Fourier-spectrum loss (0 = off; default: %(default)s)")
    recipe.add_argument("--pixel-weight", type=non_negative, default=TrainConfig.pixel_weight,
                        help="weight of the pixel-wise binary loss on the last block's map (DeepPixBiS; 0 = off; default: %(default)s)")
    recipe.add_argument("--real-compact-weight", type=non_negative, default=TrainConfig.real_compact_weight,
                        help="weight of a loss pulling every source's real faces to one point of the pooled features "
                             "(0 = off; default: %(default)s)")
    recipe.add_argument("--ensemble", type=int, default=TrainConfig.ensemble,
                        help="train this many models (seeds seed, seed+1, ...) and average them in one graph (default: %(default)s)")
    recipe.add_argument("--flip-average", action="store_true", help="the model also scores mirrored crops and averages")
    recipe.add_argument("--crop-resize", choices=CROP_RESIZES, default=TrainConfig.crop_resize,
                        help="how crops are shrunk (liveness.crop; default: %(default)s)")
    recipe.add_argument("--crop-border", choices=CROP_BORDERS, default=TrainConfig.crop_border,
                        help="black outside the frame, or crops fitted inside it (liveness.crop; default: %(default)s)")
    recipe.add_argument("--three-way", action="store_true",
                        help="train a real / print / replay softmax (exported as fake = print + replay)")
    recipe.add_argument("--degrade-p", type=probability, nargs=2, default=list(DEGRADE_P), metavar=("ATTACK", "REAL"),
                        help="probability of blur/downscale/JPEG damage for attacks and for real faces (default: %(default)s)")
    recipe.add_argument("--input-standardise", action="store_true",
                        help="standardise every channel of every crop (zero mean, unit spread) inside the model")
    recipe.add_argument("--freeze-stem", action="store_true",
                        help="--architecture res10: keep the detector's stem fixed, train only the blocks after it")
    recipe.add_argument("--share-tuned-stem", action="store_true",
                        help="--architecture res10 --ensemble N: members after the first train their blocks on the first's "
                             "fine-tuned stem (frozen); the graph computes it once per face")
    recipe.add_argument("--partner-architecture", choices=PARTNER_ARCHITECTURES, default="",
                        help="--share-tuned-stem: members after the first are of this architecture, on the first's "
                             "tuned first stage (frozen; default: the first's architecture, on its whole stem); "
                             "blaze, blaze_deep: on BlazeFace's pretrained layers instead, sharing nothing")
    recipe.add_argument("--extra-architecture", choices=INDEPENDENT_PARTNERS, default="",
                        help="one more member of this architecture (BlazeFace's pretrained layers), trained whole and "
                             "averaged with the ensemble's")
    recipe.add_argument("--frozen-probe", choices=PROBE_STEMS, default="",
                        help="add a logistic regression on this frozen pretrained stem's feature statistics "
                             "(mesh: MediaPipe's face mesh), weighing as one more member (training.probe)")
    recipe.add_argument("--probe-gate", action="store_true",
                        help="with --frozen-probe: the probe counts only for faces far from every training setup "
                             "(beyond the training crops' 99th percentile of Mahalanobis distance; training.probe)")
    recipe.add_argument("--probe-weight", type=float, default=0.0, metavar="SHARE",
                        help="with --frozen-probe: the probe's share of the score where it counts (default: as one more "
                             "member, 1 / (members + 1))")
    recipe.add_argument("--probe-balance-setups", action="store_true",
                        help="with --frozen-probe: every capture setup weighs the same in the probe's fit (training.probe)")
    recipe.add_argument("--real-edge-by-source", action="store_true",
                        help="frame edges on real faces at a rate per source that matches its attacks' mean black padding")
    recipe.add_argument("--degrade-by-source", action="store_true",
                        help="per source, the label with the sharper faces gets the higher of the two --degrade-p rates")
    for flag, what in (("--erase-p", "a noise rectangle in each crop of a training sample"),
                       ("--edge-p", "simulated frame edges near the face, both labels alike"),
                       ("--real-edge-p", "simulated frame edges near the face for real faces only (on top of --edge-p)"),
                       ("--mask-p", "a drawn surgical mask on the face, both labels alike"),
                       ("--screen-p", "a drawn dark screen behind or beside the face, both labels alike"),
                       ("--bystander-p", "another sample's face pasted beside or above the face, both labels alike"),
                       ("--tone-p", "another camera's tone curve (black level, white, colour, gamma), both labels alike"),
                       ("--light-p", "a dimmer exposure and light from one side (one smooth field), both labels alike"),
                       ("--backlight-p", "backlight: the face darker, the scene around it brighter, both labels alike"),
                       ("--mixstyle-p", "mixing a batch's feature statistics after res10's first stage (MixStyle; "
                                        "res10 architectures, training only)")):
        recipe.add_argument(flag, type=probability, default=getattr(TrainConfig, flag[2:].replace("-", "_")),
                            help=f"probability of {what} (0 = off; default: %(default)s)")
    recipe.add_argument("--recapture-p", type=probability, default=TrainConfig.recapture_p,
                        help="probability that a real face becomes a simulated screen recapture of itself, labelled a "
                             "replay (0 = off; default: %(default)s)")
    recipe.add_argument("--real-adversary-weight", type=non_negative, default=TrainConfig.real_adversary_weight,
                        help="a source classifier on real faces behind a gradient reversal of this strength: real faces "
                             "of every source made alike (single-side adversarial; 0 = off; default: %(default)s)")
    recipe.add_argument("--cdc-theta", type=probability, default=TrainConfig.cdc_theta,
                        help="central-difference depthwise convolutions in the separable blocks, this share of each "
                             "kernel read as differences from the centre (0 = plain; default: %(default)s)")
    recipe.add_argument("--partner-cdc-theta", type=probability, default=TrainConfig.partner_cdc_theta,
                        help="as --cdc-theta, on the ensemble's members after the first only (0 = off; default: %(default)s)")
    recipe.add_argument("--sam-rho", type=non_negative, default=TrainConfig.sam_rho,
                        help="sharpness-aware minimisation of this radius (training.sam; about twice the training time; "
                             "0 = plain steps; default: %(default)s)")
    recipe.add_argument("--mixup-alpha", type=non_negative, default=TrainConfig.mixup_alpha,
                        help="blend training samples and their targets, weight ~ Beta(alpha, alpha) (0 = off; default: %(default)s)")
    recipe.add_argument("--average-last", type=probability, default=TrainConfig.average_last,
                        help="export the mean of the weights over this last share of the training steps (0 = off; default: %(default)s)")
    recipe.add_argument("--average-lr", type=probability, default=TrainConfig.average_lr,
                        help="with --average-last: constant learning rate while averaging, as a share of the initial one (default: %(default)s)")
    recipe.add_argument("--distill-seeds", type=int, nargs="+", default=[], metavar="SEED",
                        help="train teachers with these seeds first; the model learns their averaged probabilities (default: off)")
    recipe.add_argument("--distill-weight", type=probability, default=TrainConfig.distill_weight,
                        help="with --distill-seeds: share of each target taken from the teachers (default: %(default)s)")
    recipe.add_argument("--member-scales", nargs="+", default=[], metavar="S,S",
                        help="members that see only these tiles, one comma list per group (each a subset of --scales); "
                             "--ensemble members per group (default: every member sees every tile)")


def recipe_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the recipe options describe."""
    return TrainConfig(architecture=args.architecture, size=args.size, scales=list(args.scales), epochs=args.epochs,
                       samples_per_epoch=args.samples_per_epoch, batch_size=args.batch_size, weight_decay=args.weight_decay, seed=args.seed,
                       source_power=args.source_power, crop_weight=args.crop_weight,
                       spectrum_weight=args.spectrum_weight, pixel_weight=args.pixel_weight,
                       real_compact_weight=args.real_compact_weight,
                       real_adversary_weight=args.real_adversary_weight,
                       ensemble=args.ensemble, flip_average=args.flip_average,
                       degrade_p=(args.degrade_p[0], args.degrade_p[1]), degrade_by_source=args.degrade_by_source,
                       input_standardise=args.input_standardise, freeze_stem=args.freeze_stem,
                       share_tuned_stem=args.share_tuned_stem, partner_architecture=args.partner_architecture,
                       extra_architecture=args.extra_architecture, frozen_probe=args.frozen_probe, probe_gate=args.probe_gate,
                       probe_weight=args.probe_weight, probe_balance_setups=args.probe_balance_setups,
                       three_way=args.three_way,
                       crop_resize=args.crop_resize, crop_border=args.crop_border, erase_p=args.erase_p, edge_p=args.edge_p,
                       real_edge_p=args.real_edge_p, real_edge_by_source=args.real_edge_by_source,
                       mask_p=args.mask_p, screen_p=args.screen_p, bystander_p=args.bystander_p, tone_p=args.tone_p, light_p=args.light_p,
                       backlight_p=args.backlight_p, mixstyle_p=args.mixstyle_p,
                       cdc_theta=args.cdc_theta, partner_cdc_theta=args.partner_cdc_theta, sam_rho=args.sam_rho, recapture_p=args.recapture_p, mixup_alpha=args.mixup_alpha, average_last=args.average_last,
                       average_lr=args.average_lr, distill_seeds=list(args.distill_seeds),
                       distill_weight=args.distill_weight,
                       member_scales=[[float(s) for s in spec.split(",")] for spec in args.member_scales])


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", required=True, type=Path, help="data set folder/manifest, or gather_examples output")
    parser.add_argument("-m", "--model", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("-p", "--plot", type=Path, default=Path("runs/plot.png"), help="training-curve PNG")
    add_recipe_arguments(parser)
    parser.add_argument("--val-groups", nargs="*", default=["replay_attack_devel"],
                        help="sources held out for validation (default: Replay-Attack's devel people); none: train on all")
    parser.add_argument("--leave-out", metavar="FOLD", default=None,
                        help="hold out a leave-one-source-out fold's sources instead (training.evaluate.FOLDS): "
                             "the model of that fold, for checks on its videos")
    parser.add_argument("--limit", type=int, default=0, help="use at most N samples (quick smoke runs)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="decision threshold to store (default: at 5%% APCER on the validation sources, else 0.5)")
    parser.add_argument("--threshold-policy", default=None, metavar="TEXT",
                        help="with --threshold: how it was chosen, stored beside it in the metadata")
    parser.add_argument("--version", default="1", help="model_version stored in the metadata")
    args = parser.parse_args(argv)

    from liveness.metadata import ModelMetadata
    from training.metrics import summary, threshold_at_apcer

    try:
        config = recipe_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    from training.evaluate import FOLDS

    if args.threshold_policy is not None and args.threshold is None:  # it would be dropped: the threshold is chosen here
        parser.error("--threshold-policy describes a given --threshold: give --threshold too")
    if args.leave_out is not None and args.leave_out not in FOLDS:
        parser.error(f"--leave-out {args.leave_out!r}: not a fold ({', '.join(FOLDS)})")
    try:
        data = load_dataset(args.dataset, config.size, config.scales, crop_resize=config.crop_resize,
                            crop_border=config.crop_border)
    except ValueError as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    if args.limit and len(data) > args.limit:
        pick = np.random.default_rng(args.seed).choice(len(data), args.limit, replace=False)
        data = data.subset(np.sort(pick))
    val_groups = [] if args.val_groups in ([], ["none"]) else args.val_groups
    if args.leave_out is not None:
        val_groups = FOLDS[args.leave_out]
    train, validation = split_by_group(data, val_groups)
    print(f"train: {len(train)} crops from {len(set(train.group.tolist()))} sources; "
          f"validation: {len(validation)} crops from {sorted(set(validation.group.tolist()))}", file=sys.stderr)
    model, history = train_model(train, config, validation if len(validation) else None)
    save_plot(history, args.plot)

    threshold, policy = 0.5, "default 0.5 (not calibrated)"
    validation_figures: dict[str, float] = {}
    if len(validation) and len(set(validation.y.tolist())) == 2:
        scores = predict(model, validation.x)
        if args.threshold is None:
            threshold = threshold_at_apcer(validation.y, scores, 0.05)
            policy = f"APCER 5% on validation sources {', '.join(val_groups)}"
        validation_figures = summary(validation.y, scores, threshold if args.threshold is None else args.threshold, validation.attack)
    if args.threshold is not None:
        threshold, policy = args.threshold, args.threshold_policy or "given on the command line"
    threshold = float(min(max(threshold, 0.0), 1.0))
    metadata = ModelMetadata(
        input_size=config.size,
        crop_scales=[float(s) for s in config.scales],
        crop_resize=config.crop_resize,
        crop_border=config.crop_border,
        labels=["fake", "real"],
        threshold=threshold,
        channel_order="RGB",
        mean=MEAN,
        std=STD,
        model_version=args.version,
        threshold_policy=policy,
        training={
            "config": asdict(config),
            "data": "face-liveness development data (../shared/data): research and evaluation use only",
            "faces_per_source": data_summary(train),
            "validation_sources": val_groups,
            "validation": {k: round(v, 4) for k, v in validation_figures.items()},
            "detector": "res10 confidence 0.5, largest face",
        },
    )
    parity_crops = (validation if len(validation) else train).x[:64]
    difference = export_onnx(model, args.model, metadata, parity_crops)
    print(f"wrote {args.model} ({args.model.stat().st_size / 1e6:.2f} MB); parity max abs diff {difference:.2e}; "
          f"threshold {threshold:.4f} ({policy})")
    if validation_figures:
        print("validation: " + json.dumps({k: round(v, 4) for k, v in validation_figures.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
