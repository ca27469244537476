"""Train a photo-z ensemble (catalog networks or CNNs on cutouts) with Ray Train and write its
model artifact.

Flow: validate the labelled table -> fit the feature transform (and balance weights) on the
training rows, and for image models the cutout stretch on a sample of training cutouts ->
optionally pre-train one network on a simulated survey -> train M members
(each a TorchTrainer run; member i seeded from seed + i; fine-tuned from the pre-trained
weights when there are some), as many at once as the cluster has room for, re-planned as it
grows (:mod:`raypz.train.schedule`) -> calibrate one PDF
width scale on the validation (or out-of-fold) rows -> save the artifact
-> predict the validation rows and record their metrics (raypz.metrics) in model.json.
Domain-adversarial image models also stream the unlabelled rows of a ``target`` table.

Ray Train runs are named after the data fingerprint and config, so rerunning the same command
after an interruption resumes each member from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import ray
import ray.train
import torch
from ray.train.torch import TorchTrainer

from raypz import io
from raypz.columns import flux_to_mag
from raypz.features import FeatureTransform
from raypz.features.cutouts import CutoutStretch
from raypz.metrics import evaluate
from raypz.models import EnsemblePredictor, load_artifact, save_artifact
from raypz.models.heads import WIDTH_SCALE_KEY
from raypz.pdf import ZGrid, cdf_at
from raypz.predictions import predictions_table
from raypz.ray_runtime import cluster_has_gpus, init_ray
from raypz.schema import validate_dataset
from raypz.train.augment import BalanceWeights, r_magnitude
from raypz.train.config import TrainConfig
from raypz.train.data import (
    LabelledArrays,
    has_epoch_columns,
    member_datasets,
    read_cutouts,
    read_labelled,
    target_dataset,
    train_mask,
)
from raypz.train.loop import load_best_state, numpy_state, train_loop_per_worker
from raypz.train.resources import check_worker_resources
from raypz.train.schedule import Resources, members_that_fit, plan_workers, run_as_room_allows
from raypz.train.splits import fold_of

WIDTH_SCALES = np.round(np.arange(0.5, 1.5001, 0.1), 3)
"""Coarse PDF width scales tried by the calibration (1 = uncalibrated); it then refines the
best one in steps of ``WIDTH_SCALE_STEP``."""
WIDTH_SCALE_STEP = 0.02

VALIDATION_DIR = "validation"
"""Sub-directory of the artifact with validation / out-of-fold predictions (Parquet)."""


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        artifact: the artifact directory.
        model_hash: its hash.
        members: per-member facts (seed, fold, epochs run, best validation loss, seconds).
        validation_predictions: Parquet of the ensemble's validation / out-of-fold PDFs.
        seconds: wall time of the whole run.
    """

    artifact: str
    model_hash: str
    members: list[dict]
    validation_predictions: str
    seconds: float


def _fit(
    run_name: str,
    storage: str,
    datasets: dict,
    loop_config: dict,
    config: TrainConfig,
    res: Resources,
) -> tuple[dict, dict]:
    fs, inner = io.resolve(storage)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.workers,
            use_gpu=res.use_gpu,
            resources_per_worker={
                "CPU": res.cpus_per_worker,
                **({"GPU": 1} if res.use_gpu else {}),
                **config.worker_resources,
            },
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=inner,
            storage_filesystem=fs,
            failure_config=ray.train.FailureConfig(max_failures=2),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
        datasets=datasets,
    )
    result = trainer.fit()
    return load_best_state(result.checkpoint), dict(result.metrics or {})


_NOT_IN_RUN_ID = ("calibrate", "calibration_rows", "max_concurrent_members", "worker_resources")
"""Config fields that do not change what a Ray Train run computes (post-training steps, or
scheduling): changing them reuses the finished runs."""


def _run_id(
    name: str, fingerprint: dict, config: TrainConfig, stage: str, target: str | None
) -> str:
    settings = {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_RUN_ID}
    blob = json.dumps([fingerprint, settings, stage, target], sort_keys=True).encode()
    return f"{name}-{stage}-{hashlib.sha256(blob).hexdigest()[:10]}"


def _fit_cutout_stretch(train: str, config: TrainConfig) -> CutoutStretch:
    """The cutout stretch fitted on the first ``cutout_fit_rows`` usable training cutouts."""
    raw, usable = read_cutouts(train, config, rows=config.cutout_fit_rows)
    if not usable.any():
        raise ValueError(f"{train}: column {config.columns.cutout!r} has no usable cutout")
    return CutoutStretch.fit(raw[usable], column=config.columns.cutout)


def train_ensemble(
    train: str,
    output: str,
    config: TrainConfig | None = None,
    pretrain: str | None = None,
    storage_path: str | None = None,
    name: str = "catalog",
    target: str | None = None,
) -> TrainResult:
    """Train an ensemble on the labelled table ``train`` and write the artifact to ``output``.

    Args:
        train: labelled object table (Parquet file, directory or HATS; local or URI).
        output: artifact directory to write.
        config: training configuration (defaults: 5 catalog members, MDN head; set
            ``config.image`` to train CNNs on the ``cutout`` column).
        pretrain: optional labelled simulated survey to pre-train on before fine-tuning.
        storage_path: where Ray Train keeps checkpoints (default ``{output}/_checkpoints``).
        name: model name used in the model id.
        target: unlabelled table of the target field, for domain-adversarial training
            (required when ``config.image.domain_adapt``, else not allowed).
    """
    config = config or TrainConfig()
    if config.domain_adapt != (target is not None):
        raise ValueError(
            "domain-adversarial training needs a target table, and a target table needs "
            "domain adaptation (ImageNetConfig.domain_adapt)"
        )
    t0 = time.perf_counter()
    init_ray()
    check_worker_resources(config)  # fail now, not after reading the data (or never)
    storage = storage_path or io.join(output, "_checkpoints")
    images = config.image is not None
    for path in [train] + ([pretrain] if pretrain else []):
        report = validate_dataset(path, config.columns, require_labels=True, require_cutouts=images)
        print(report.summary())
    if target is not None:
        print(validate_dataset(target, config.columns, require_cutouts=True).summary())
    labelled = read_labelled(train, config)
    fingerprint = labelled.fingerprint(train)
    sim = read_labelled(pretrain, config) if pretrain else None

    fit_rows = labelled.take(
        train_mask(labelled.object_id, config, fold=None if not config.kfold else -1)
    )
    pool = fit_rows if sim is None else _concat(fit_rows, sim)
    sample = np.random.default_rng(config.seed).permutation(len(pool.z))[: config.fit_sample_rows]
    transform = FeatureTransform.fit(pool.flux[sample], pool.err[sample], columns=config.columns)
    balance = (
        BalanceWeights.fit(fit_rows.z, r_magnitude(fit_rows.flux[:, 2]), config.balance_max_weight)
        if config.balanced
        else None
    )
    stretch = _fit_cutout_stretch(train, config) if images else None
    res = plan_workers(config, cluster_has_gpus())
    base_loop = {
        "train": config.to_dict(),
        "features": transform.to_dict(),
        "cutouts": stretch.to_dict() if stretch is not None else None,
    }

    def datasets(path: str, fold: int | None, bal: BalanceWeights | None) -> dict:
        out = member_datasets(path, config, fold, bal, has_epoch_columns(path, config))
        return {**out, "target": target_dataset(target, config)} if target else out

    init_state = None
    if sim is not None:
        pre_epochs = config.pretrain_epochs or config.epochs
        t_pre = time.perf_counter()
        init_state, _ = _fit(
            _run_id(name, sim.fingerprint(pretrain), config, "pretrain", target),
            storage,
            datasets(pretrain, None, None),
            {**base_loop, "seed": config.seed, "epochs": pre_epochs, "lr": config.lr},
            config,
            res,
        )
        print(f"pre-training on {pretrain}: {time.perf_counter() - t_pre:.1f} s")
    lr = config.lr * (config.finetune_lr_factor if init_state is not None else 1.0)

    def member(i: int) -> tuple[dict, dict]:
        t_m = time.perf_counter()
        fold = i if config.kfold else None
        state, metrics = _fit(
            _run_id(name, fingerprint, config, f"member{i:02d}", target),
            storage,
            datasets(train, fold, balance),
            {
                **base_loop,
                "seed": config.seed + i,
                "epochs": config.epochs,
                "lr": lr,
                "init_state": numpy_state(init_state) if init_state is not None else None,
            },
            config,
            res,
        )
        info = {
            "seed": config.seed + i,
            "fold": fold,
            "epochs_run": int(metrics.get("epoch", -1)) + 1,
            "best_val_loss": float(metrics.get("best_val_loss", np.nan)),
            **(
                {"final_domain_loss": float(metrics["domain_loss"])}
                if config.domain_adapt and "domain_loss" in metrics
                else {}
            ),
            "seconds": round(time.perf_counter() - t_m, 1),
        }
        print(f"member {i}: {info}")
        return state, info

    bundle = {**res.bundle(), **config.worker_resources}
    trained, most_at_once = run_as_room_allows(
        member, config.n_members, lambda: members_that_fit(bundle, config, ray.cluster_resources())
    )
    states = [s for s, _ in trained]
    members = [m for _, m in trained]
    training = {
        "config": config.to_dict(),
        "data": fingerprint,
        "pretrain": sim.fingerprint(pretrain) if sim is not None else None,
        "target": {"path": target} if target else None,
        "resources": {
            "use_gpu": res.use_gpu,
            "cpus_per_worker": res.cpus_per_worker,
            "most_concurrent_members": most_at_once,
        },
    }
    artifact_kwargs = {
        "name": name,
        "transform": transform,
        "grid": config.grid,
        "net_config": config.network,
        "members": members,
        "training": training,
        "cutouts": stretch,
    }
    val_path = _finalize(output, train, labelled, config, states, artifact_kwargs)
    artifact = load_artifact(output)
    return TrainResult(output, artifact.model_hash, members, val_path, time.perf_counter() - t0)


def _finalize(
    output: str,
    train: str,
    labelled: LabelledArrays,
    config: TrainConfig,
    states: list[dict],
    artifact_kwargs: dict,
) -> str:
    """Save the artifact, calibrate its PDF widths on the validation rows, record the validation
    metrics in model.json and write the validation predictions; returns their path."""
    if artifact_kwargs["cutouts"] is not None:
        labelled = _with_images(labelled, train, config, artifact_kwargs["cutouts"])
    states = [_with_width_scale(s, 1.0) for s in states]
    save_artifact(output, states=states, metrics={}, **artifact_kwargs)
    predictor = EnsemblePredictor(load_artifact(output), device="auto")
    rows, pdf, flags = _validation_pdfs(predictor, labelled, config)
    calibration: dict = {"width_scale": 1.0}
    if config.calibrate and rows.any():
        calibration = _calibrate(predictor, labelled, config, rows)
        states = [_with_width_scale(s, calibration["width_scale"]) for s in states]
        save_artifact(output, states=states, metrics={}, **artifact_kwargs)
        predictor = EnsemblePredictor(load_artifact(output), device="auto")
        rows, pdf, flags = _validation_pdfs(predictor, labelled, config)
    metrics = validation_metrics(labelled, config, rows, pdf, flags)
    metrics["calibration"] = calibration
    save_artifact(output, states=states, metrics=metrics, **artifact_kwargs)
    return _write_validation_predictions(output, labelled, config, rows, pdf, flags)


def recalibrate(output: str, train: str, config: TrainConfig | None = None) -> dict:
    """Refit the width scale of an existing artifact on its validation rows, in place.

    ``train`` is the labelled table the artifact was trained on (its validation split is
    fixed by objectId); ``config`` defaults to the one stored in model.json (its calibration
    settings may be changed). Rewrites the members, model.json metrics and validation
    predictions; returns the new metrics.
    """
    artifact = load_artifact(output)
    meta = artifact.meta
    config = config or TrainConfig.from_dict(meta["training"]["config"])
    labelled = read_labelled(train, config)
    members = [
        {k: v for k, v in entry.items() if k not in ("file", "sha256")} for entry in meta["members"]
    ]
    artifact_kwargs = {
        "name": meta["model_id"].rsplit("-", 1)[0],
        "transform": artifact.transform,
        "grid": artifact.grid,
        "net_config": artifact.net_config,
        "members": members,
        "training": {**meta["training"], "config": config.to_dict()},
        "cutouts": artifact.cutouts,
    }
    _finalize(output, train, labelled, config, list(artifact.states), artifact_kwargs)
    return load_artifact(output).meta["metrics"]


def _with_images(
    labelled: LabelledArrays, train: str, config: TrainConfig, stretch: CutoutStretch
) -> LabelledArrays:
    """The rows an image model is scored on by the driver (the validation split, or every row
    in k-fold mode) with their stretched cutouts; rows without a usable cutout are left out of
    the validation metrics (and counted)."""
    if not config.kfold:
        labelled = labelled.take(~train_mask(labelled.object_id, config, None))
    raw, usable = read_cutouts(train, config, labelled.object_id)
    if not usable.all():
        print(f"validation: {int((~usable).sum())} rows without a usable cutout are not scored")
    kept = labelled.take(usable)
    return LabelledArrays(kept.object_id, kept.flux, kept.err, kept.z, stretch(raw[usable]))


def _concat(a: LabelledArrays, b: LabelledArrays) -> LabelledArrays:
    return LabelledArrays(
        np.concatenate([a.object_id, b.object_id]),
        np.concatenate([a.flux, b.flux]),
        np.concatenate([a.err, b.err]),
        np.concatenate([a.z, b.z]),
    )


def _with_width_scale(state: dict, scale: float) -> dict:
    """A member state dict whose head carries the calibration ``scale``."""
    key = f"head.{WIDTH_SCALE_KEY}"
    return {**state, key: torch.tensor(float(scale), dtype=torch.float32)}


def _set_width_scale(predictor: EnsemblePredictor, scale: float) -> None:
    for net in predictor.members:
        getattr(net.head, WIDTH_SCALE_KEY).fill_(float(scale))


def _validation_pdfs(
    predictor: EnsemblePredictor, labelled: LabelledArrays, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (N,) bool, their PDFs (n, G) and flags (n,): the ensemble on the validation split,
    or in k-fold mode each member on its own fold (out-of-fold PDFs for every row)."""
    x, flags = predictor.artifact.transform.transform_fluxes(labelled.flux, labelled.err)
    if config.kfold:
        pdf = np.zeros((len(labelled.z), config.grid.n), dtype=np.float32)
        for rows, (k,) in _member_groups(labelled.object_id, config, len(predictor.members)):
            pdf[rows] = predictor.predict_member(k, x[rows], _rows_of(labelled.images, rows))
        return np.ones(len(labelled.z), dtype=bool), pdf, flags
    rows = ~train_mask(labelled.object_id, config, None)
    if not rows.any():
        return rows, np.zeros((0, config.grid.n), np.float32), np.zeros(0, np.int32)
    pdf, extra_flags = predictor.predict(x[rows], _rows_of(labelled.images, rows))
    return rows, pdf, flags[rows] | extra_flags


def _member_groups(
    object_id: np.ndarray, config: TrainConfig, n_members: int
) -> list[tuple[np.ndarray, list[int]]]:
    """Which members predict which of the given rows on the driver: in k-fold mode member k
    predicts fold k (non-empty folds only), else every member predicts every row (the callers
    pass the validation rows)."""
    if config.kfold:
        folds = fold_of(object_id, config.kfold)
        return [(folds == k, [k]) for k in range(config.kfold) if (folds == k).any()]
    return [(np.ones(len(object_id), dtype=bool), list(range(n_members)))]


def _rows_of(images: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return images[rows] if images is not None else None


def log_score(pdf: np.ndarray, grid: ZGrid, z: np.ndarray, floor: float = 1e-4) -> float:
    """Mean negative log of the PDFs (n, G) at their true redshifts (linear on the grid)."""
    pos = np.clip((z - grid.z_min) / grid.dz, 0.0, grid.n - 1.0)
    lo = np.minimum(np.floor(pos).astype(np.int64), grid.n - 2)
    frac = pos - lo
    r = np.arange(len(z))
    dens = (1 - frac) * pdf[r, lo] + frac * pdf[r, lo + 1]
    return float(-np.mean(np.log(np.maximum(dens, floor))))


def _calibrate(
    predictor: EnsemblePredictor, labelled: LabelledArrays, config: TrainConfig, rows: np.ndarray
) -> dict:
    """The width scale minimising the ensemble's validation log score (ties: closest to 1).

    The ensemble PDF is the mean of member PDFs, which adds the members' spread to each
    member's own width; one scale of every member's widths undoes the excess (or a lack).
    ``rows`` are predicted by the members :func:`_member_groups` assigns them.
    """
    idx = np.flatnonzero(rows)
    if len(idx) > config.calibration_rows:
        idx = np.sort(
            np.random.default_rng(config.seed).choice(idx, config.calibration_rows, replace=False)
        )
    sub = labelled.take(idx)
    x, _ = predictor.artifact.transform.transform_fluxes(sub.flux, sub.err)
    # the networks run once; only the heads' PDFs are redone for each trial scale
    cached = [
        (rows, members, predictor.head_outputs(x[rows], _rows_of(sub.images, rows), members))
        for rows, members in _member_groups(sub.object_id, config, len(predictor.members))
    ]

    def pdfs() -> np.ndarray:
        pdf = np.zeros((len(sub.z), config.grid.n), dtype=np.float32)
        for rows, members, outputs in cached:
            pdf[rows] = predictor.pdf_from_head_outputs(outputs, members)
        return pdf

    scores: dict[float, float] = {}

    def score(scale: float) -> float:
        if scale not in scores:
            _set_width_scale(predictor, scale)
            pdf = pdfs()
            keep = np.isfinite(sub.z) & (pdf.sum(axis=1) > 0)
            scores[scale] = log_score(pdf[keep], config.grid, sub.z[keep])
        return scores[scale]

    def best_of(candidates) -> float:
        return min(candidates, key=lambda s: (round(score(s), 6), abs(s - 1.0)))

    coarse = best_of([float(s) for s in WIDTH_SCALES])
    fine = np.round(coarse + WIDTH_SCALE_STEP * np.arange(-4, 5), 3)
    best = best_of([float(s) for s in fine if s > 0.05] + [1.0])
    _set_width_scale(predictor, best)
    pit = cdf_at(pdfs(), config.grid, sub.z)
    print(
        f"calibration: width scale {best} (validation log score {scores[1.0]:.4f} at 1 -> "
        f"{scores[best]:.4f}; {len(idx)} rows)"
    )
    return {
        "width_scale": best,
        "rows": len(idx),
        "log_score_uncalibrated": scores[1.0],
        "log_score": scores[best],
        "coverage_68_fit_rows": float(np.mean(np.abs(pit - 0.5) <= 0.34)),
    }


def validation_metrics(
    labelled: LabelledArrays,
    config: TrainConfig,
    rows: np.ndarray,
    pdf: np.ndarray,
    flags: np.ndarray,
) -> dict:
    """raypz.metrics of the validation (or out-of-fold) PDFs, for model.json.

    ``overall`` holds every metric of DESIGN 8; ``mag_i`` the same in i-band magnitude bins.
    """
    z = labelled.z[rows]
    mag = flux_to_mag(labelled.flux[rows, 3])
    result = evaluate(config.grid, pdf, z, mag, flags)
    return {
        "split": "out-of-fold" if config.kfold else "validation",
        "n_rows": result["n_rows"],
        "n_scored": result["n_scored"],
        "overall": result["overall"],
        "mag_i": result["binned"]["mag"],
    }


def _write_validation_predictions(
    output: str,
    labelled: LabelledArrays,
    config: TrainConfig,
    rows: np.ndarray,
    pdf: np.ndarray,
    flags: np.ndarray,
) -> str:
    """Write the validation (or out-of-fold) PDFs as a predictions table (Parquet)."""
    table = predictions_table(labelled.object_id[rows], pdf, config.grid, flags=flags)
    path = io.join(output, VALIDATION_DIR, "predictions.parquet")
    io.makedirs(io.join(output, VALIDATION_DIR))
    fs, inner = io.resolve(path)
    pq.write_table(table, inner, filesystem=fs)
    return path
