"""Train a photo-z ensemble (catalog networks or CNNs on cutouts) with Ray Train and write its
model artifact.

Flow: validate the labelled table -> fit the feature transform (and balance weights) on the
training rows, and for image models the cutout stretch on a sample of training cutouts ->
optionally pre-train one network (or one per member) on a simulated survey -> train M
members (each a TorchTrainer run; member i seeded from seed + i; fine-tuned from the
pre-trained weights when there are some), as many at once as the cluster has room for,
re-planned as it grows (:mod:`raypz.train.schedule`) -> calibrate one PDF width scale on the
validation rows -> save the artifact
-> predict the validation rows and record their metrics (raypz.metrics) in model.json.
Domain-adversarial image models also stream the unlabelled rows of a ``target`` table.

Ray Train runs are named after the data fingerprint and config, so rerunning the same command
after an interruption resumes each unfinished member from its last checkpoint and loads each
finished one (:mod:`raypz.train.finished`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import ray.train
import torch
from ray.train.torch import TorchTrainer

from raypz import flags as fl
from raypz import io
from raypz.columns import BANDS, flux_to_mag
from raypz.features import FeatureTransform, usable_bands
from raypz.features.cutouts import CutoutStretch
from raypz.lease import OutputLease
from raypz.metrics import evaluate
from raypz.models import (
    CatalogNetConfig,
    EnsemblePredictor,
    ImageNetConfig,
    load_artifact,
    save_artifact,
)
from raypz.models.artifact import (
    MEMBER_FILES,
    MODEL_JSON,
    REFERENCE_FILE,
    TRAINING_CURVES,
    remove_artifact,
)
from raypz.models.reference import TrainingReference
from raypz.object_stream import checked_join, declared_pixel_scale
from raypz.pdf import ZGrid
from raypz.plots import plot_training_curves
from raypz.predictions import predictions_table
from raypz.progress import ProgressLine
from raypz.ray_runtime import RemoteProgress, cluster_has_gpus, init_ray
from raypz.schema import ContractError, RefusedError, usable_redshift, validate_dataset
from raypz.schema.values import REDSHIFT_RANGE
from raypz.train.augment import BalanceWeights, r_magnitude
from raypz.train.calibration import calibrate, validation_pdfs, with_width_scale
from raypz.train.config import TrainConfig
from raypz.train.datasets import member_datasets, target_dataset
from raypz.train.finished import load_finished, save_finished
from raypz.train.labelled import (
    LabelledArrays,
    has_epoch_columns,
    read_cutouts,
    read_labelled,
    read_training_rows,
    train_mask,
)
from raypz.train.loop import load_member_checkpoint, train_loop_per_worker
from raypz.train.member import MemberProgress, MemberSpec
from raypz.train.resources import check_worker_resources
from raypz.train.schedule import Resources, members_that_fit, plan_workers, run_as_room_allows
from raypz.train.tasks import fit_in_task

VALIDATION_DIR = "validation"
"""Sub-directory of the artifact with the ensemble's validation predictions (Parquet)."""


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        artifact: the artifact directory.
        model_hash: its hash.
        members: per-member facts (seed, fold, epochs run, best validation loss, seconds).
        validation_predictions: Parquet of the ensemble's validation PDFs.
        seconds: wall time of the whole run.
    """

    artifact: str
    model_hash: str
    members: list[dict]
    validation_predictions: str
    seconds: float


@dataclass(frozen=True)
class RayFit:
    """One member's Ray Train run: its best weights, its progress (history per epoch, epochs
    resumed at) and the metrics of its last report (``worker_nodes`` among them)."""

    best_state: dict[str, torch.Tensor]
    progress: MemberProgress
    metrics: dict


def fit_on_ray(
    run_name: str,
    storage: str,
    datasets: dict,
    spec: MemberSpec,
    res: Resources,
    progress: Any = None,
) -> RayFit:
    """Train one member with Ray Train (:func:`raypz.train.loop.train_loop_per_worker`) on
    ``datasets`` (``train``, ``val`` and optionally ``target``), with checkpoints under
    ``storage``/``run_name``: rerunning with the same name resumes the run. ``progress`` is
    the handle of a :class:`raypz.ray_runtime.RemoteProgress` that counts epochs, or None."""
    if not TorchTrainer.__module__.startswith("ray.train.v2"):
        # Train V1 starts a fresh run under an existing name: members would restart at epoch 0
        raise RuntimeError(
            "raypz resumes interrupted members through Ray Train V2, which is off here: unset "
            "RAY_TRAIN_V2_ENABLED or set it to 1 (the default since Ray 2.51)"
        )
    config = spec.config
    fs, inner = io.resolve(storage)
    # Ray Train replaces a dataset's execution options by the global context's: keep the file
    # order (datasets.member_datasets), so that a resumed member sees the batches it would have
    ingest = ray.train.DataConfig.default_ingest_options()
    ingest.preserve_order = True
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": spec, "progress": progress},
        dataset_config=ray.train.DataConfig(execution_options=ingest),
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
    state = load_member_checkpoint(result.checkpoint)
    if progress is not None:  # a member finished in an earlier run reports no epoch
        progress.reach.remote(spec.seed, spec.n_epochs)
    return RayFit(state["best"], MemberProgress.from_dict(state["progress"]), result.metrics or {})


_NOT_IN_RUN_ID = ("calibrate", "calibration_rows", "max_concurrent_members", "worker_resources")
"""Config fields that do not change what a Ray Train run computes (post-training steps, or
scheduling): changing them reuses the finished runs."""


_NOT_IN_PRETRAINING_ID = ("members", "finetune_lr_factor", "pretrain_each_member")
"""Config fields that a pre-training does not read: changing them reuses its finished runs
(the one shared pre-training is member 0's, seeded alike)."""


def _run_settings(config_dict: dict, pretrained: bool, pretraining: bool = False) -> dict:
    """What of a config (``TrainConfig.to_dict()``, or one read from model.json) a run's
    weights depend on. Without a pre-training table ``pretrain_each_member`` changes nothing
    and is left out, so models and runs from before it existed are found; with one, a
    model.json that lacks it shared one pre-training. ``pretraining``: the settings of a
    pre-training run itself."""
    settings = {k: v for k, v in config_dict.items() if k not in _NOT_IN_RUN_ID}
    if pretrained:
        settings.setdefault("pretrain_each_member", False)
    else:
        settings.pop("pretrain_each_member", None)
    if pretraining:
        settings = {k: v for k, v in settings.items() if k not in _NOT_IN_PRETRAINING_ID}
    return settings


_KFOLD_SPLIT = "folds-outside-validation"
"""Part of a k-fold run's id: runs from before k-fold held the validation split out of every
member (they trained on it) are not resumed."""


def _run_id(
    name: str,
    fingerprint: dict,
    config: TrainConfig,
    stage: str,
    target: str | None,
    fitted: dict,
) -> str:
    """The name of a member's (or the pre-training's) run, under which a rerun finds it
    finished: a hash of everything its weights depend on. ``fitted`` holds what the driver
    fitted before training (feature transform, cutout stretch) and the pre-training table's
    fingerprint, so that a rerun with ``--pretrain`` (whose transform is fitted on both
    tables) never reuses members trained without it."""
    pretrained = fitted["pretrain"] is not None
    settings = _run_settings(config.to_dict(), pretrained, stage.startswith("pretrain"))
    key = [fingerprint, settings, stage, target, fitted]
    key += [_KFOLD_SPLIT] if config.kfold else []
    blob = json.dumps(key, sort_keys=True).encode()
    return f"{name}-{stage}-{hashlib.sha256(blob).hexdigest()[:10]}"


def _claim_output(
    output: str, train: str, config: TrainConfig, identity: dict, replace: bool
) -> bool:
    """Before training, refuse an ``output`` that would mix this model with other files:
    inside the training table (its validation predictions would be read as labelled rows),
    files of another kind, or a model trained on other data or with other settings (only the
    post-training and scheduling settings of ``_NOT_IN_RUN_ID`` may change on a rerun), unless
    ``replace``. True when ``output`` holds such a model to replace: the caller removes it
    (:func:`remove_artifact`, its checkpoints stay) once every input check has passed, so a
    refused input leaves the old model whole."""
    if io.is_inside(output, train):
        raise RefusedError(
            f"{output}: the model must be written outside its training table {train} (a "
            "rerun would read its validation predictions as labelled rows)"
        )
    try:
        found = json.loads(io.read_bytes(io.join(output, MODEL_JSON)))["training"]
    except FileNotFoundError:  # a first run, or one stopped before its first save
        ours = ("_checkpoints", MEMBER_FILES, REFERENCE_FILE, TRAINING_CURVES, VALIDATION_DIR)
        io.require_empty(output, "raypz training", ours=ours)
        return False

    def key(config_dict: dict, facts: dict) -> str:
        settings = _run_settings(config_dict, facts["pretrain"] is not None)
        return json.dumps([settings, *(facts[k] for k in identity)], sort_keys=True)

    if key(found["config"], found) == key(config.to_dict(), identity):
        return False
    if not replace:
        raise FileExistsError(
            f"{io.join(output, MODEL_JSON)}: a model trained on other data or with other "
            "settings; choose a new output, or replace it (--replace; "
            "train_ensemble(..., replace=True))"
        )
    return True


def check_labelled(path: str, rows: LabelledArrays, config: TrainConfig) -> None:
    """The checks of a labelled table that training runs before any work (and the Tune search
    before its trials, which otherwise each failed inside): usable labels, also in the
    validation split, more than one label value, every band measured somewhere; labels beyond
    the grid are counted. Raises ContractError or RefusedError naming ``path``."""
    _require_validation_labels(path, rows, config)
    _require_label_spread(path, rows, config)
    _require_every_band(path, rows, config)
    _warn_beyond_grid(path, rows, config)


def _require_validation_labels(path: str, rows: LabelledArrays, config: TrainConfig) -> None:
    """ValueError unless the validation split of ``path`` holds a usable redshift: early stopping
    would otherwise compare losses of no row (0 every epoch) and keep the first epoch."""
    if not usable_redshift(rows.z).any():  # not the split's fault: say what is wrong
        lo, hi = REDSHIFT_RANGE
        raise ContractError(
            path,
            config.columns.redshift,
            f"no usable label in {len(rows.z)} rows ({lo:g} <= z <= {hi:g} is a label; NaN and "
            "placeholders such as -99 are not): the wrong column, or a table without spec-z",
        )
    held_out = ~train_mask(rows.object_id, config, fold=None)
    if not usable_redshift(rows.z[held_out]).any():
        raise RefusedError(
            f"{path}: no row of the validation split ({int(held_out.sum())} of {len(rows.z)} "
            f"rows, val_fraction {config.val_fraction:g} by objectId hash) has a usable "
            "redshift; early stopping and the calibration need them: add rows or raise "
            "val_fraction"
        )


def _require_every_band(path: str, rows: LabelledArrays, config: TrainConfig) -> None:
    """ContractError naming the column unless some row of ``path`` measured each band (a
    finite flux with a positive error): a transform fitted without a band's measurements
    places every object that has one far from the training set, and the model flags them all."""
    usable, _ = usable_bands(rows.flux, rows.err)
    for j, band in enumerate(BANDS):
        if not usable[:, j].any():
            column = config.columns.flux.format(band=band)
            raise ContractError(
                path,
                column,
                f"no row measured band {band} (a finite flux with a positive "
                f"{config.columns.flux_err.format(band=band)}): every model input needs "
                "measurements to fit its scaling on",
            )


def _require_label_spread(path: str, rows: LabelledArrays, config: TrainConfig) -> None:
    """ContractError naming the redshift column when every usable label of ``path`` is the
    same value: a placeholder or the wrong column joined in. A model trained on it predicts a
    spike at that value for every object, and its validation metrics look perfect."""
    z = np.unique(rows.z[usable_redshift(rows.z)])
    if z.size == 1:
        raise ContractError(
            path,
            config.columns.redshift,
            f"every usable label is z = {z[0]:g}: a redshift model needs labels that vary "
            "(a placeholder value, or the wrong column?)",
        )


def _warn_beyond_grid(path: str, rows: LabelledArrays, config: TrainConfig) -> None:
    """Say how many usable labels of ``path`` lie beyond the z grid's end: no PDF on the grid
    reaches them (both heads learn them as the grid's end)."""
    z = rows.z[usable_redshift(rows.z)]
    beyond = int((z > config.grid.z_max).sum())
    if beyond:
        print(
            f"warning: {path}: {beyond} of {z.size} labels lie beyond the z grid's end "
            f"(z_max {config.grid.z_max:g}); their PDFs cannot reach them: widen the grid or "
            "drop those rows"
        )


def _fit_cutout_stretch(
    train: str, config: TrainConfig, fit_ids: np.ndarray, cutouts: str | None
) -> CutoutStretch:
    """The cutout stretch fitted on the usable cutouts of the first ``cutout_fit_rows`` of
    ``fit_ids``, the training rows' objectIds (of the table's cutout column, or of the cutout
    store ``cutouts``); validation rows stay out of every fit. It records the pixel scale the
    cutout files declare."""
    fit_ids = fit_ids[: config.cutout_fit_rows]
    raw, usable = read_cutouts(train, config, fit_ids, cutouts=cutouts)
    c = config.columns
    if not usable.any():
        raise RefusedError(f"{cutouts or train}: column {c.cutout!r} has no usable cutout")
    scale = declared_pixel_scale(train, cutouts, c.cutout, c.object_id)
    return CutoutStretch.fit(raw[usable], column=c.cutout, pixel_scale_arcsec=scale)


def train_ensemble(
    train: str,
    output: str,
    config: TrainConfig | None = None,
    pretrain: str | None = None,
    storage_path: str | None = None,
    name: str = "catalog",
    target: str | None = None,
    cutouts: str | None = None,
    target_cutouts: str | None = None,
    replace: bool = False,
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
        cutouts: image models: a cutout store co-partitioned with ``train``
            (:mod:`raypz.cutout_store`, Parquet or FITS cutout files), joined on objectId in
            the stream; None when the cutouts are a column of ``train``.
        target_cutouts: the same for ``target``.
        replace: replace a model that ``output`` holds and that was trained on other data or
            with other settings; without it that is an error. A rerun of the same training
            resumes it either way.

    Raises:
        FileExistsError: another run is writing ``output`` (:mod:`raypz.lease`), or it holds
            a model trained otherwise and ``replace`` is False.
    """
    require_model_name(name)
    with OutputLease(io.absolute(output), "raypz training"):  # one run writes a model at once
        return _train_ensemble(
            train, output, config, pretrain, storage_path, name, target, cutouts,
            target_cutouts, replace,
        )  # fmt: skip


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A model name: it names checkpoint directories (``_checkpoints/NAME-member00-...``) and
starts the model id."""


def require_model_name(name: str) -> str:
    """``name`` when it is a :data:`MODEL_NAME`; ValueError otherwise (a name with ``/`` or
    ``..`` wrote checkpoints outside the output)."""
    if not MODEL_NAME.fullmatch(name):
        raise RefusedError(
            f"model name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (it names checkpoint directories and the model id)"
        )
    return name


def _train_ensemble(
    train: str,
    output: str,
    config: TrainConfig | None,
    pretrain: str | None,
    storage_path: str | None,
    name: str,
    target: str | None,
    cutouts: str | None,
    target_cutouts: str | None,
    replace: bool,
) -> TrainResult:
    """:func:`train_ensemble` once its output is leased."""
    config = config or TrainConfig()
    if config.domain_adapt != (target is not None):
        raise ValueError(
            "domain-adversarial training needs a target table, and a target table needs "
            "domain adaptation (ImageNetConfig.domain_adapt)"
        )
    t0 = time.perf_counter()
    init_ray()
    check_worker_resources(config)  # fail now, not after reading the data (or never)
    # tasks and Ray Train workers open these paths, maybe in another working directory
    train, output = io.absolute(train), io.absolute(output)
    pretrain, storage_path, target, cutouts, target_cutouts = (
        io.absolute(p) if p else None
        for p in (pretrain, storage_path, target, cutouts, target_cutouts)
    )
    storage = storage_path or io.join(output, "_checkpoints")
    images = config.image is not None
    if not images and (cutouts or target_cutouts):
        raise ValueError("cutout stores are read by image models only (TrainConfig.image)")
    for path, store in [(train, cutouts)] + ([(pretrain, None)] if pretrain else []):
        report = validate_dataset(
            path, config.columns, require_labels=True, require_cutouts=images and not store
        )
        print(report.summary())
    if target is not None:
        need = target_cutouts is None
        print(validate_dataset(target, config.columns, require_cutouts=need).summary())
    labelled = read_labelled(train, config)
    fingerprint = labelled.fingerprint(train)
    sim = read_labelled(pretrain, config) if pretrain else None
    identity = {
        "data": fingerprint,
        "pretrain": sim.fingerprint(pretrain) if sim is not None else None,
        "target": {"path": target} if target else None,
    }
    stale = _claim_output(output, train, config, identity, replace)
    for path, rows in [(train, labelled)] + ([(pretrain, sim)] if sim is not None else []):
        check_labelled(path, rows, config)

    fit_rows = labelled.take(train_mask(labelled.object_id, config, fold=None))
    pool = fit_rows if sim is None else _concat(fit_rows, sim)
    sample = np.random.default_rng(config.seed).permutation(len(pool.z))[: config.fit_sample_rows]
    transform = FeatureTransform.fit(pool.flux[sample], pool.err[sample], columns=config.columns)
    reference = _training_reference(transform, fit_rows, config.seed)
    balance = (
        BalanceWeights.fit(fit_rows.z, r_magnitude(fit_rows.flux[:, 2]), config.balance_max_weight)
        if config.balanced
        else None
    )
    stretch = _fit_cutout_stretch(train, config, fit_rows.object_id, cutouts) if images else None
    joins = {}
    if stretch is not None:
        c, shape, scale = config.columns, stretch.shape, stretch.pixel_scale_arcsec
        joins = {train: checked_join(train, cutouts, c.cutout, shape, c.object_id, scale)}
        if target is not None:  # the same pixels, where its files say
            joins[target] = checked_join(
                target, target_cutouts, c.cutout, shape, c.object_id, scale
            )
        if pretrain is not None:  # its cutout column is checked (it has no store)
            joins[pretrain] = checked_join(pretrain, None, c.cutout, shape, c.object_id, scale)
    if stale:  # every input check has passed: only now is the old model given up
        where = io.join(output, MODEL_JSON)
        print(f"{where}: a model trained on other data or with other settings; replacing it")
        remove_artifact(output)
    res = plan_workers(config, cluster_has_gpus())

    def datasets(path: str, fold: int | None, bal: BalanceWeights | None) -> dict:
        with_epochs = has_epoch_columns(path, config)
        out = member_datasets(path, config, fold, bal, with_epochs, joins.get(path))
        if target:
            out["target"] = target_dataset(target, config, joins.get(target))
        return out

    def spec(seed: int, epochs: int, lr: float, init: dict | None) -> MemberSpec:
        init_np = {k: v.numpy() for k, v in init.items()} if init is not None else None
        return MemberSpec(config, transform, seed, epochs, lr, stretch, init_np)

    in_tasks = config.trains_in_tasks(len(labelled.z) + (len(sim.z) if sim is not None else 0))
    tables = {}
    if in_tasks:  # the labelled rows go to the object store once, for every member's task
        tables = {p: ray.put(read_training_rows(p, config)) for p in [train, pretrain] if p}

    fingerprints = {train: fingerprint, **({pretrain: sim.fingerprint(pretrain)} if sim else {})}
    fitted = {
        "features": transform.to_dict(),
        "cutouts": stretch.to_dict() if stretch is not None else None,
        "pretrain": fingerprints.get(pretrain),
    }

    def fit(stage: str, path: str, fold, bal, member_spec: MemberSpec, counter) -> tuple:
        """One member (or the pre-training) in a task or through Ray Train, or loaded when an
        earlier run finished it; ``counter`` is the epoch counter's handle."""
        run = _run_id(name, fingerprints[path], config, stage, target, fitted)
        run_dir = io.join(storage, run)
        if (finished := load_finished(run_dir)) is not None:
            who = "pre-training" if stage.startswith("pretrain") else "member"
            note = f"{who} seed {member_spec.seed}: finished earlier"
            counter.reach.remote(member_spec.seed, member_spec.n_epochs, note)
            return finished
        if in_tasks:
            best, done = fit_in_task(tables[path], member_spec, fold, bal, res.use_gpu, counter)
        else:
            ray_fit = fit_on_ray(run, storage, datasets(path, fold, bal), member_spec, res, counter)
            best, done = ray_fit.best_state, ray_fit.progress
        save_finished(run_dir, best, done)
        return best, done

    bundle = (
        {"CPU": 1.0, **({"GPU": 1.0} if res.use_gpu else {})}
        if in_tasks
        else {**res.bundle(), **config.worker_resources}
    )

    def room() -> int:
        return members_that_fit(bundle, config, ray.cluster_resources(), not in_tasks)

    inits: list[dict | None] = [None]  # the initial weights of member i: inits[i % len(inits)]
    if sim is not None:
        n_pre = config.n_members if config.pretrain_each_member else 1
        pre_epochs = config.pretrain_epochs or config.epochs
        pre_line = ProgressLine("pre-train", n_pre * pre_epochs, "epochs")

        def pretrained(i: int) -> dict:
            stage = f"pretrain{i:02d}"  # the shared one is member 0's
            pre_spec = spec(config.seed + i, pre_epochs, config.lr, None)
            return fit(stage, pretrain, None, None, pre_spec, pre_progress.handle)[0]

        with RemoteProgress(pre_line) as pre_progress:
            inits, _ = run_as_room_allows(pretrained, n_pre, room)
    lr = config.lr * (config.finetune_lr_factor if sim is not None else 1.0)

    def member(i: int) -> tuple[dict, dict]:
        t_m = time.perf_counter()
        fold = i if config.kfold else None
        member_spec = spec(config.seed + i, config.epochs, lr, inits[i % len(inits)])
        state, done = fit(f"member{i:02d}", train, fold, balance, member_spec, progress.handle)
        seconds = time.perf_counter() - t_m
        return state, member_info(done, config.seed + i, fold, seconds)

    total_epochs = config.n_members * config.epochs
    with RemoteProgress(ProgressLine("train", total_epochs, "epochs")) as progress:
        trained, most_at_once = run_as_room_allows(member, config.n_members, room)
    states = [s for s, _ in trained]
    members = [m for _, m in trained]
    if unused := max(m["unused_rows"] for m in members):
        print(
            f"train: {unused} training rows of {train} (the most of any member) have no usable "
            "band or cutout, or no usable redshift: they trained with weight 0"
        )
    training = {
        "config": config.to_dict(),
        **identity,
        "resources": {
            "use_gpu": res.use_gpu,
            "cpus_per_worker": res.cpus_per_worker,
            "most_concurrent_members": most_at_once,
            "trainer": "tasks" if in_tasks else "ray_train",
        },
    }
    contents = ArtifactContents(
        name, transform, config.grid, config.network, members, training, stretch, reference
    )
    val_path = _finalize(output, train, labelled, config, states, contents, cutouts)
    artifact = load_artifact(output)
    return TrainResult(output, artifact.model_hash, members, val_path, time.perf_counter() - t0)


def _training_reference(
    transform: FeatureTransform, rows: LabelledArrays, seed: int
) -> TrainingReference:
    """The sample of training features behind the catalog's ``train_distance`` column (rows
    with a usable band only)."""
    x, flags = transform.transform_fluxes(rows.flux, rows.err)
    return TrainingReference.fit(x[(flags & fl.NO_PDF) == 0], seed=seed)


def member_info(progress: MemberProgress, seed: int, fold: int | None, seconds: float) -> dict:
    """What model.json records of a member: seed, fold, epochs run, best validation loss, the
    epochs at which it resumed from a checkpoint, its training rows that taught nothing
    (weight 0: no usable band or cutout, or no usable redshift), wall time and its loss
    history (columns: epoch, train_loss, val_loss; domain_loss for domain-adversarial
    members)."""
    history = progress.history
    columns = ["epoch", "train_loss", "val_loss"]
    if history and not math.isnan(history[-1].domain_loss):
        columns.append("domain_loss")
    return {
        "seed": seed,
        "fold": fold,
        "epochs_run": progress.next_epoch,
        "best_val_loss": float(progress.best_loss),
        "resumed_at": list(progress.resumed_at),
        "unused_rows": progress.unused_rows,
        "seconds": round(seconds, 1),
        "history": {c: [getattr(r, c) for r in history] for c in columns},
    }


@dataclass(frozen=True)
class ArtifactContents:
    """Everything of an artifact but its weights and metrics (see ``save_artifact``)."""

    name: str
    transform: FeatureTransform
    grid: ZGrid
    net_config: CatalogNetConfig | ImageNetConfig
    members: list[dict]
    training: dict
    cutouts: CutoutStretch | None
    reference: TrainingReference | None

    def save(self, output: str, states: list[dict], metrics: dict) -> None:
        """Write the artifact with these member ``states`` and validation ``metrics``."""
        save_artifact(
            output,
            name=self.name,
            transform=self.transform,
            grid=self.grid,
            net_config=self.net_config,
            members=self.members,
            training=self.training,
            cutouts=self.cutouts,
            reference=self.reference,
            states=states,
            metrics=metrics,
        )


def _finalize(
    output: str,
    train: str,
    labelled: LabelledArrays,
    config: TrainConfig,
    states: list[dict],
    contents: ArtifactContents,
    cutouts: str | None = None,
) -> str:
    """Save the artifact, calibrate its PDF widths on the validation rows, record the validation
    metrics in model.json, write the validation predictions and the training-curve plot;
    returns the predictions' path."""
    if contents.cutouts is not None:
        labelled = _with_images(labelled, train, config, contents.cutouts, cutouts)
    states = [with_width_scale(s, 1.0) for s in states]
    contents.save(output, states, {})
    predictor = EnsemblePredictor(load_artifact(output), device="auto")
    calibration: dict = {"width_scale": 1.0}
    held_out = ~train_mask(labelled.object_id, config, None)
    if config.calibrate and held_out.any():
        calibration = calibrate(predictor, labelled, config, held_out)
        states = [with_width_scale(s, calibration["width_scale"]) for s in states]
        contents.save(output, states, {})
        predictor = EnsemblePredictor(load_artifact(output), device="auto")
    rows, pdf, flags = validation_pdfs(predictor, labelled, config)
    metrics = validation_metrics(labelled, config, rows, pdf, flags)
    metrics["calibration"] = calibration
    # what a reader of these numbers must know: the split is not an independent test set
    chose = ["each member's best epoch (the state kept)"]
    if "log_score" in calibration:  # fitted (not skipped, nor turned off)
        chose.append("the width scale")
    metrics["split_also_chose"] = chose
    contents.save(output, states, metrics)
    if any(m.get("history") for m in contents.members):
        plot_training_curves(contents.members, io.join(output, TRAINING_CURVES))
    return _write_validation_predictions(output, labelled, config, rows, pdf, flags)


def recalibrate(
    output: str, train: str, config: TrainConfig | None = None, cutouts: str | None = None
) -> dict:
    """Refit the width scale of an existing artifact on its validation rows, in place.

    ``train`` is the labelled table the artifact was trained on (its validation split is
    fixed by objectId; an image model's cutout store, if any, is ``cutouts``); ``config``
    defaults to the one stored in model.json (its calibration settings may be changed).
    Rewrites the members, model.json metrics and validation predictions; returns the new
    metrics.
    """
    artifact = load_artifact(output)
    meta = artifact.meta
    if meta.get("metrics", {}).get("split") == "out-of-fold":
        raise ValueError(
            f"{output}: a k-fold model from before the validation split was held out of its "
            "members (model.json metrics split 'out-of-fold'); they trained on every row, so "
            "none is left to calibrate on: train it again"
        )
    config = config or TrainConfig.from_dict(meta["training"]["config"])
    labelled = read_labelled(train, config)
    contents = ArtifactContents(
        name=meta["model_id"].rsplit("-", 1)[0],
        transform=artifact.transform,
        grid=artifact.grid,
        net_config=artifact.net_config,
        members=[
            {k: v for k, v in m.items() if k not in ("file", "sha256")} for m in meta["members"]
        ],
        training={**meta["training"], "config": config.to_dict()},
        cutouts=artifact.cutouts,
        reference=artifact.reference,
    )
    _finalize(output, train, labelled, config, list(artifact.states), contents, cutouts)
    return load_artifact(output).meta["metrics"]


def _with_images(
    labelled: LabelledArrays,
    train: str,
    config: TrainConfig,
    stretch: CutoutStretch,
    cutouts: str | None,
) -> LabelledArrays:
    """The rows an image model is scored on by the driver (the validation split) with their
    stretched cutouts; rows without a usable cutout are left out of the validation metrics
    (and counted)."""
    labelled = labelled.take(~train_mask(labelled.object_id, config, None))
    raw, usable = read_cutouts(train, config, labelled.object_id, cutouts=cutouts)
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


def validation_metrics(
    labelled: LabelledArrays,
    config: TrainConfig,
    rows: np.ndarray,
    pdf: np.ndarray,
    flags: np.ndarray,
) -> dict:
    """raypz.metrics of the ensemble's PDFs on the validation split, for model.json.

    ``overall`` holds every metric of DESIGN 8; ``mag_i`` the same in i-band magnitude bins.
    The split also picked each member's best epoch and the width scale (model.json says so
    under ``split_also_chose``), so these scores are optimistic: a test table that chose
    nothing is scored with ``jobs/evaluate.py``.
    """
    z = labelled.z[rows]
    mag = flux_to_mag(labelled.flux[rows, BANDS.index("i")])
    result = evaluate(config.grid, pdf, z, mag, flags)
    return {
        "split": "validation",
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
    """Write the ensemble's validation PDFs as a predictions table (Parquet)."""
    table = predictions_table(labelled.object_id[rows], pdf, config.grid, flags=flags)
    path = io.join(output, VALIDATION_DIR, "predictions.parquet")
    io.write_parquet(table, path)
    return path
