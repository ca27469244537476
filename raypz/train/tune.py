"""Hyper-parameter search for the catalog network with Ray Tune and ASHA.

>>> settings = TuneSettings(trials=16, time_budget_s=900)                     # doctest: +SKIP
>>> result = run_search("specz/", "tune/", TrainConfig(epochs=60), settings)  # doctest: +SKIP
>>> result.best_config.lr, result.best["best_val_nll"]                       # doctest: +SKIP

Each trial trains one member (:func:`raypz.train.member.train_member`, the trainer of every
other path) on the training split of the labelled table, held in the object store once for all
trials, with 1 CPU (one torch thread) and a share of a GPU when the cluster has GPUs. After
every epoch it reports to Tune the validation log score of the network as it stands
(``val_nll``: mean negative log of the PDF on the z grid at the true redshift, the score that
:mod:`raypz.train.calibration` minimises; the same for MDN and binned heads, and free of the
autoencoder's reconstruction term, whose weight is searched) and the lowest so far
(``best_val_nll``, the metric that ASHA and the ranking use: a trial keeps its best weights).
ASHA stops the trials that are behind at each rung (``grace_period`` epochs, then x
``reduction_factor``); ``TrainConfig.epochs`` is the budget ``max_t`` and the length of every
trial's cosine schedule. A trial that trains to its end (or stops on its own patience) also
reports sigma_MAD, eta_0.15 and the mean CRPS of its best weights on the validation rows.

The search space, :data:`SEARCH_SPACE`, samples (random search, seeded from
``TrainConfig.seed``):

============== ====================================== =========================================
parameter      distribution                           sets
============== ====================================== =========================================
lr             log-uniform 3e-4 .. 1e-2               ``TrainConfig.lr``
weight_decay   log-uniform 1e-6 .. 1e-3               ``TrainConfig.weight_decay``
batch_size     one of 64, 128, 256, 512               ``TrainConfig.batch_size``
flux_noise     one of 0, 0.25, 0.5, 1                 ``TrainConfig.flux_noise``
width          one of 128, 256, 512                   ``CatalogNetConfig.hidden`` = width x depth
depth          one of 2, 3, 4                         (with ``width``)
dropout        one of 0, 0.05, 0.1, 0.2               ``CatalogNetConfig.dropout``
n_components   one of 3, 5, 8                         ``CatalogNetConfig.n_components``
dae_noise      uniform 0 .. 0.3                       ``CatalogNetConfig.dae_noise``
dae_weight     log-uniform 0.01 .. 1                  ``CatalogNetConfig.dae_weight``
============== ====================================== =========================================

Every other setting comes from the base configuration. The split is the base's fixed
validation split (``val_fraction``, by objectId hash), also when the base is in k-fold mode.

Outputs under OUTPUT: ``best_config.json`` (the base with the best trial's settings, a complete
``TrainConfig.to_dict()`` that ``jobs/train_ensemble.py --config`` reads), ``trials.csv`` and
``trials.md`` (every trial, ranked: scores, epochs run, status, settings), ``search.json`` (what
was searched, on what, and the best trial) and ``experiment/`` (Tune's own state, trial results
and checkpoints). Rerunning the same command continues an interrupted search there
(:meth:`ray.tune.Tuner.restore`): finished trials are kept, unfinished ones resume from their
last epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io as _bytes_io
import json
import logging
import math
import os
import posixpath
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from raypz import io
from raypz.config_rules import require_finite
from raypz.features import FeatureTransform
from raypz.metrics import aggregate, score_rows
from raypz.models.artifact import build_network
from raypz.progress import ProgressLine
from raypz.ray_runtime import assigned_device, cluster_has_gpus
from raypz.schema import validate_dataset
from raypz.train.augment import BalanceWeights, r_magnitude
from raypz.train.batches import BatchPreparer
from raypz.train.calibration import log_score
from raypz.train.config import TrainConfig
from raypz.train.ensemble import check_labelled
from raypz.train.labelled import (
    LabelledArrays,
    member_rows,
    read_labelled,
    read_training_rows,
    train_mask,
)
from raypz.train.member import MemberProgress, MemberSpec, TableBatches, train_member

SEARCH_SPACE: dict[str, Any] = {
    "lr": tune.loguniform(3e-4, 1e-2),
    "weight_decay": tune.loguniform(1e-6, 1e-3),
    "batch_size": tune.choice([64, 128, 256, 512]),
    "flux_noise": tune.choice([0.0, 0.25, 0.5, 1.0]),
    "width": tune.choice([128, 256, 512]),
    "depth": tune.choice([2, 3, 4]),
    "dropout": tune.choice([0.0, 0.05, 0.1, 0.2]),
    "n_components": tune.choice([3, 5, 8]),
    "dae_noise": tune.uniform(0.0, 0.3),
    "dae_weight": tune.loguniform(0.01, 1.0),
}
"""The default search space (see the module docstring): parameter -> Tune domain."""

TRAIN_PARAMS = ("lr", "weight_decay", "batch_size", "flux_noise")
"""Parameters that are fields of :class:`TrainConfig`."""
NET_PARAMS = ("dropout", "n_components", "dae_noise", "dae_weight")
"""Parameters that are fields of :class:`~raypz.models.CatalogNetConfig` (besides ``width`` and
``depth``, which make ``hidden``)."""
SEARCHED_FIELDS = {"train": (*TRAIN_PARAMS,), "net": ("hidden", *NET_PARAMS)}
"""The config fields the search sets (a job gives them no flag: the search decides them)."""

METRIC = "best_val_nll"
"""What ASHA compares and the ranking sorts by (lower is better)."""
EXPERIMENT = "experiment"
"""Tune's experiment directory under OUTPUT."""
BEST_CONFIG = "best_config.json"
TRIALS_CSV = "trials.csv"
TRIALS_MD = "trials.md"
SEARCH_JSON = "search.json"
CHECKPOINT_FILE = "trial.pt"
"""File of a trial's per-epoch checkpoint (a :func:`raypz.train.member.member_checkpoint` plus
the trial's best log score and weights)."""


@dataclass(frozen=True)
class TuneSettings:
    """How the search runs (the searched network and training settings: ``SEARCH_SPACE``).

    Attributes:
        trials: trials to sample (each trains one member).
        time_budget_s: wall-clock budget of the whole search in seconds; running trials are
            stopped and no new ones start when it is spent (None: no budget). An interrupted
            search that is continued keeps what was left of its first budget; one that ran out
            of budget has ended (rerunning it rewrites its results).
        grace_period: epochs every trial trains before ASHA may stop it (its first rung).
        reduction_factor: ASHA keeps the best 1/reduction_factor of the trials at each rung;
            rungs are at grace_period x reduction_factor^k epochs, up to ``--epochs``.
        max_concurrent_trials: most trials at once (None: as many as the cluster holds, one
            per CPU).
        gpus_per_trial: GPU share of a trial on a cluster with GPUs (small networks share one
            GPU); None: 0.25 when the cluster has GPUs and ``--gpu`` is not no, else 0.
        checkpoint_every: epochs between a trial's checkpoints, which an interrupted search
            resumes its unfinished trials from (each is written to the output storage: on
            s3:// a few MB per checkpoint); 0: none, unfinished trials restart.
    """

    trials: int = 16
    time_budget_s: float | None = None
    grace_period: int = 5
    reduction_factor: int = 3
    max_concurrent_trials: int | None = None
    gpus_per_trial: float | None = None
    checkpoint_every: int = 5

    def __post_init__(self) -> None:
        require_finite(self)
        checks = {
            "trials >= 1": self.trials >= 1,
            "grace_period >= 1": self.grace_period >= 1,
            "reduction_factor >= 2": self.reduction_factor >= 2,
            "time_budget_s > 0": self.time_budget_s is None or self.time_budget_s > 0,
            "max_concurrent_trials >= 1": self.max_concurrent_trials is None
            or self.max_concurrent_trials >= 1,
            "gpus_per_trial >= 0": self.gpus_per_trial is None or self.gpus_per_trial >= 0,
            "checkpoint_every >= 0": self.checkpoint_every >= 0,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"TuneSettings: rule(s) broken: {', '.join(failed)}")


def apply_params(base: TrainConfig, params: Mapping[str, Any]) -> TrainConfig:
    """``base`` with a trial's sampled ``params`` (the keys of :data:`SEARCH_SPACE`; keys that
    are absent keep the base's values)."""
    net_values = {k: params[k] for k in NET_PARAMS if k in params}
    if "width" in params or "depth" in params:
        width = int(params.get("width", base.net.hidden[-1]))
        net_values["hidden"] = (width,) * int(params.get("depth", len(base.net.hidden)))
    for k in ("n_components",):
        if k in net_values:
            net_values[k] = int(net_values[k])
    train_values = {k: params[k] for k in TRAIN_PARAMS if k in params}
    if "batch_size" in train_values:
        train_values["batch_size"] = int(train_values["batch_size"])
    return dataclasses.replace(
        base, **train_values, net=dataclasses.replace(base.net, **net_values)
    )


def describe_space(space: Mapping[str, Any] = SEARCH_SPACE) -> dict[str, str]:
    """Parameter -> its distribution in words (for search.json)."""
    out = {}
    for name, domain in space.items():
        if hasattr(domain, "categories"):
            out[name] = f"one of {list(domain.categories)}"
        else:
            kind = "log-uniform" if "Log" in type(domain.get_sampler()).__name__ else "uniform"
            out[name] = f"{kind} {domain.lower:g} .. {domain.upper:g}"
    return out


class ValidationScorer:
    """The validation rows of a trial, prepared once, and the scores of a network on them.

    Args:
        val: the validation rows (a table with the training columns).
        config: the trial's configuration (grid, columns).
        transform: the fitted feature transform.
        device: where the network is.
        max_rows: most rows kept (a seeded random subset beyond that: the per-epoch score
            makes PDFs on the grid for every row).
    """

    def __init__(
        self,
        val: pa.Table,
        config: TrainConfig,
        transform: FeatureTransform,
        device: torch.device,
        max_rows: int,
    ) -> None:
        prep = BatchPreparer(transform, config, seed=0)
        (x,), z, w = prep(TableBatches(val).columns, augment=False)
        keep = np.flatnonzero(w > 0)
        if len(keep) > max_rows:
            keep = np.sort(np.random.default_rng(config.seed).choice(keep, max_rows, False))
        if not len(keep):
            raise ValueError("no usable validation row (raise val_fraction)")
        self.grid = config.grid
        self.z = z[keep].astype(np.float64)
        self.x = torch.as_tensor(x[keep], device=device)
        self.z_grid = torch.tensor(config.grid.values, dtype=torch.float32, device=device)

    @torch.no_grad()
    def pdf(self, net: torch.nn.Module) -> np.ndarray:
        """PDFs (n, G) of the network on the rows (eval mode; the mode is restored)."""
        was_training = net.training
        net.eval()
        try:
            out = net.head_output(self.x)
            return net.head.pdf(out, self.z_grid).float().cpu().numpy()
        finally:
            net.train(was_training)

    def log_score(self, net: torch.nn.Module) -> float:
        """Mean negative log PDF at the true redshifts (see
        :func:`~raypz.train.calibration.log_score`)."""
        return log_score(self.pdf(net), self.grid, self.z)

    def metrics(self, net: torch.nn.Module) -> dict[str, float]:
        """sigma_MAD, eta_0.15, bias and mean CRPS (raypz.metrics; PDF mode as z_phot)."""
        agg = aggregate(score_rows(self.grid, self.pdf(net), self.z))
        return {
            "sigma_mad": agg["sigma_mad"],
            "eta_0.15": agg["eta_0.15"],
            "bias": agg["bias_median"],
            "crps": agg["crps_mean"],
        }


def _load_checkpoint() -> dict[str, Any] | None:
    """The trial's last checkpoint (restored trials), or None."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d, open(os.path.join(d, CHECKPOINT_FILE), "rb") as f:
        return torch.load(f, map_location="cpu", weights_only=True)


def tune_trial(
    params: dict[str, Any],
    *,
    table: pa.Table,
    transform: FeatureTransform,
    base: TrainConfig,
    balance: BalanceWeights | None,
    checkpoint_every: int = 0,
) -> None:
    """One Tune trial: train one member with ``params`` on ``base``'s training split and report
    the validation scores after every epoch, with a checkpoint every ``checkpoint_every`` epochs
    (see the module docstring)."""
    torch.set_num_threads(1)  # one CPU per trial
    config = apply_params(base, params)
    device = assigned_device()
    train = TableBatches(member_rows(table, config, None, True, balance))
    val_rows = member_rows(table, config, None, False)
    scorer = ValidationScorer(val_rows, config, transform, device, config.calibration_rows)
    resume = _load_checkpoint()
    best: dict[str, Any] = {"nll": math.inf, "epoch": -1, "state": {}}
    if resume is not None:
        best = resume.pop("tune_best")
    nets: list[torch.nn.Module] = []

    def keep_net(net: torch.nn.Module) -> torch.nn.Module:
        nets.append(net)  # the bare network, scored between epochs
        return net

    def report(progress: MemberProgress, checkpoint, stop: bool) -> None:
        net, record = nets[0], progress.history[-1]
        nll = scorer.log_score(net)
        if nll < best["nll"]:
            state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            best.update(nll=nll, epoch=record.epoch, state=state)
        metrics: dict[str, Any] = {
            "epoch": record.epoch,
            "val_nll": nll,
            METRIC: best["nll"],
            "best_epoch": best["epoch"] + 1,
            "train_loss": record.train_loss,
            "val_loss": record.val_loss,
            "trained_to_end": stop,
        }
        if stop:  # the trial ends here: score its best weights
            best_net = build_network(config.network, transform, config.grid).to(device)
            best_net.load_state_dict(best["state"])
            metrics.update(scorer.metrics(best_net))
        if stop or not checkpoint_every or (record.epoch + 1) % checkpoint_every:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save({**checkpoint(), "tune_best": best}, os.path.join(d, CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    spec = MemberSpec(config, transform, seed=config.seed)
    train_member(
        spec, train, TableBatches(val_rows), device=device, resume=resume, on_epoch=report,
        wrap_model=keep_net,
    )  # fmt: skip


@contextlib.contextmanager
def _quiet_tune(quiet: bool) -> Iterator[None]:
    """Without Tune's own tables and its notes about checkpoint frequency during the block (the
    environment is restored after it); ``quiet`` False: no change."""
    settings = {
        "RAY_AIR_NEW_OUTPUT": "0",  # the legacy reporter, silent at verbose=0
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    }
    saved = {k: os.environ.get(k) for k in settings}
    if quiet:
        for k, v in settings.items():
            os.environ.setdefault(k, v)
        # a restored experiment notes the trials that had not reported yet
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Flag:
    """Whether something happened (set from a signal handler)."""

    def __init__(self) -> None:
        self.value = False

    def __bool__(self) -> bool:
        return self.value


@contextlib.contextmanager
def _interrupt_flag() -> Iterator[_Flag]:
    """A flag that a Ctrl+C (SIGINT) during the block sets; the signal then reaches Tune as
    SIGUSR1, its own stop signal (it saves the experiment state and ends the run), so that an
    interrupted search tells itself from one that ended. Off the main thread: Tune's own
    handling, and the flag stays unset."""
    flag = _Flag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)
    env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")

    def on_sigint(signum, frame) -> None:
        flag.value = True
        signal.signal(signal.SIGINT, previous)  # a second Ctrl+C acts at once
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.SIG_IGN, None):
            raise KeyboardInterrupt  # Tune is not running yet
        os.kill(os.getpid(), signal.SIGUSR1)

    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
        if env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = env


def _trial_dirname(trial) -> str:
    """Short trial directories (Tune's default name holds every parameter)."""
    return trial.trial_id


class _ProgressCallback(tune.Callback):
    """One progress line for the search: trials ended, epochs run and the best score so far."""

    def __init__(self, trials: int) -> None:
        self.trials = trials
        self.line: ProgressLine | None = None
        self.best = math.inf
        self.epochs = 0
        self.ended: set[str] = set()

    def __getstate__(self) -> dict:  # Tune pickles its callbacks with the experiment state
        return {**self.__dict__, "line": None}

    def setup(self, **info) -> None:
        self._line()

    def _line(self) -> ProgressLine:
        if self.line is None:  # a restored search counts the trials that ended before
            self.line = ProgressLine("tune", self.trials, "trials")
            self.line.advance(len(self.ended), self._note())
        return self.line

    def _note(self) -> str:
        best = f"best val nll {self.best:.4f}" if math.isfinite(self.best) else "no score yet"
        return f"{best}, {self.epochs} epochs run"

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.epochs += 1
        self.best = min(self.best, float(result.get(METRIC, math.inf)))
        self._line().advance(0, self._note())

    def _ended(self, trial) -> None:
        if trial.trial_id not in self.ended:
            self.ended.add(trial.trial_id)
            self._line().advance(1, self._note())

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ended(trial)

    def on_experiment_end(self, trials, **info) -> None:
        if self.line is not None:
            self.line.close()


@dataclass(frozen=True)
class SearchResult:
    """What a search produced.

    Attributes:
        output: the output directory.
        best_config: the base configuration with the best trial's settings.
        trials: one row per trial, ranked (``rank`` 1 is the best; NaN scores last).
        seconds: wall time of this run (a resumed search counts from its restart).
        resumed: whether an existing experiment was continued.
        complete: False when the search was interrupted (rerunning continues it); then
            best_config.json is not written.
    """

    output: str
    best_config: TrainConfig
    trials: pd.DataFrame
    seconds: float
    resumed: bool
    complete: bool = True

    @property
    def best(self) -> pd.Series:
        """The best trial's row."""
        return self.trials.iloc[0]


def fit_transform(
    labelled: LabelledArrays, config: TrainConfig
) -> tuple[FeatureTransform, BalanceWeights | None]:
    """Feature transform (and balance weights) fitted on the training split, as
    :func:`raypz.train.train_ensemble` fits them."""
    rows = labelled.take(train_mask(labelled.object_id, config, None))
    sample = np.random.default_rng(config.seed).permutation(len(rows.z))[: config.fit_sample_rows]
    transform = FeatureTransform.fit(rows.flux[sample], rows.err[sample], columns=config.columns)
    balance = (
        BalanceWeights.fit(rows.z, r_magnitude(rows.flux[:, 2]), config.balance_max_weight)
        if config.balanced
        else None
    )
    return transform, balance


def _search_key(
    base: TrainConfig, settings: TuneSettings, data: dict, space: Mapping[str, Any]
) -> dict:
    """What identifies a search (a rerun with another key is refused; the time budget may
    change between runs)."""
    key = {
        "base_config": base.to_dict(),
        "settings": {**dataclasses.asdict(settings), "time_budget_s": None},
        "data": data,
        "space": describe_space(space),
    }
    return json.loads(json.dumps(key))  # as it reads back from search.json (lists, not tuples)


def _read_json(path: str) -> dict | None:
    try:
        return json.loads(io.read_bytes(path))
    except (FileNotFoundError, OSError):
        return None


def tune_config(base: TrainConfig, settings: TuneSettings) -> tune.TuneConfig:
    """The search's Tune settings: ASHA over epochs, seeded random sampling of
    :data:`SEARCH_SPACE`, at most ``settings.max_concurrent_trials`` trials at once. That limit
    goes to the search algorithm: Tune ignores TuneConfig's own with one given (it said so
    in a warning, and ran as many trials as the cluster held)."""
    return tune.TuneConfig(
        metric=METRIC,
        mode="min",
        scheduler=ASHAScheduler(
            time_attr="training_iteration",
            max_t=base.epochs,
            grace_period=min(settings.grace_period, base.epochs),
            reduction_factor=settings.reduction_factor,
        ),
        search_alg=BasicVariantGenerator(
            random_state=base.seed, max_concurrent=settings.max_concurrent_trials or 0
        ),
        num_samples=settings.trials,
        time_budget_s=settings.time_budget_s,
        trial_dirname_creator=_trial_dirname,
    )


def run_search(
    train: str,
    output: str,
    base: TrainConfig | None = None,
    settings: TuneSettings | None = None,
    resume: bool = False,
    verbose: bool = False,
) -> SearchResult:
    """Search the catalog network's and training's settings on ``train``'s validation split and
    write the results under ``output`` (see the module docstring). Ray must be initialised.

    Args:
        train: labelled object table (Parquet file, directory or HATS; local or URI).
        output: directory for the results and Tune's experiment (local or URI; on a
            multi-node cluster, storage that every node reaches, e.g. s3://).
        base: the configuration the searched settings replace fields of; ``epochs`` is each
            trial's schedule and ASHA's ``max_t``.
        settings: trials, budget and scheduler.
        resume: require an existing experiment under ``output`` to continue (one is continued
            anyway when present).
        verbose: Tune's own progress tables instead of one progress line.
    """
    base = base or TrainConfig()
    settings = settings or TuneSettings()
    if base.image is not None:
        raise ValueError("the search covers catalog networks (TrainConfig.image must be None)")
    t0 = time.perf_counter()
    print(validate_dataset(train, base.columns, require_labels=True).summary())
    split = dataclasses.replace(base, kfold=0)  # trials use the fixed validation split
    labelled = read_labelled(train, split)
    check_labelled(train, labelled, split)  # here, not inside every trial
    key = _search_key(base, settings, labelled.fingerprint(train), SEARCH_SPACE)
    experiment = io.join(output, EXPERIMENT)
    # raypz's filesystem for Ray too (as train_ensemble's members): the same S3 settings
    fs, storage = io.resolve(output)
    stored_experiment = posixpath.join(storage, EXPERIMENT)  # inside fs
    exists = tune.Tuner.can_restore(stored_experiment, storage_filesystem=fs)
    stored = _read_json(io.join(output, SEARCH_JSON))
    if exists and (stored is None or stored.get("key") != key):
        # continuing unpickles Tune's tuner.pkl: only an experiment this search started
        whose = "with other settings or data" if stored is not None else "that raypz did not start"
        raise FileExistsError(
            f"{output} holds a Tune experiment {whose} (see {SEARCH_JSON}); use another output"
        )
    if resume and not exists:
        raise ValueError(f"--resume: no Tune experiment to continue under {experiment}")
    io.makedirs(output)
    search = {"key": key, "time_budget_s": settings.time_budget_s}
    io.write_bytes_atomic(io.join(output, SEARCH_JSON), json.dumps(search, indent=2).encode())

    transform, balance = fit_transform(labelled, split)
    table = read_training_rows(train, split)
    gpus = settings.gpus_per_trial
    if gpus is None:
        gpus = 0.25 if base.use_gpu is not False and cluster_has_gpus() else 0.0
    trainable = tune.with_resources(
        tune.with_parameters(
            tune_trial,
            table=table,
            transform=transform,
            base=split,
            balance=balance,
            checkpoint_every=settings.checkpoint_every,
        ),
        {"cpu": 1, "gpu": gpus},
    )
    if exists:
        print(f"tune: continuing the experiment at {experiment}")
        tuner = tune.Tuner.restore(
            stored_experiment,
            trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=fs,
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=SEARCH_SPACE,
            tune_config=tune_config(base, settings),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=storage,
                storage_filesystem=fs,
                verbose=None if verbose else 0,
                callbacks=[] if verbose else [_ProgressCallback(settings.trials)],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=1),
            ),
        )
    with _quiet_tune(not verbose), _interrupt_flag() as interrupted:
        grid = tuner.fit()
    complete = not interrupted
    trials = trials_frame(grid, complete)
    if trials.empty or not np.isfinite(trials[METRIC].iloc[0]):
        if not complete:
            raise KeyboardInterrupt("the search was interrupted before any trial reported")
        raise RuntimeError(f"no trial reported a score; see the trials under {experiment}")
    best_params = {k: _plain(trials[k].iloc[0]) for k in SEARCH_SPACE}
    best_config = apply_params(base, best_params)
    seconds = time.perf_counter() - t0
    result = SearchResult(output, best_config, trials, seconds, exists, complete)
    write_results(result, search)
    return result


def trials_frame(grid: tune.ResultGrid, complete: bool = True) -> pd.DataFrame:
    """One row per trial: rank, id, status, epochs, scores and settings, best first.

    Status: "finished" (trained to the end of its schedule or its patience), "stopped" (by ASHA
    or the time budget; "unfinished" in an interrupted search, ``complete`` False: it continues
    when the search is rerun), "error", or "not started" (pending when the time budget ran out
    or the search was interrupted).
    """
    rows = []
    for r in grid:
        m = r.metrics or {}
        trial_id = m.get("trial_id") or os.path.basename(r.path.rstrip("/"))
        if r.error is not None:
            status = "error"
        elif m.get("trained_to_end"):
            status = "finished"
        elif "training_iteration" not in m:
            status = "not started"
        else:
            status = "stopped" if complete else "unfinished"
        rows.append(
            {
                "trial": trial_id,
                "status": status,
                "epochs": int(m.get("training_iteration", 0)),
                "best_epoch": int(m.get("best_epoch", -1)),
                METRIC: float(m.get(METRIC, math.nan)),
                "sigma_mad": float(m.get("sigma_mad", math.nan)),
                "eta_0.15": float(m.get("eta_0.15", math.nan)),
                "crps": float(m.get("crps", math.nan)),
                "seconds": float(m.get("time_total_s", math.nan)),
                **{k: (r.config or {}).get(k) for k in SEARCH_SPACE},
            }
        )
    frame = pd.DataFrame(rows)
    for k in SEARCH_SPACE:  # object columns: ints stay ints beside trials that never started
        frame[k] = pd.Series([row[k] for row in rows], dtype=object)
    if frame.empty:
        return frame
    frame = frame.sort_values([METRIC, "trial"], na_position="last", kind="stable")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def write_results(result: SearchResult, search: dict) -> None:
    """best_config.json, trials.csv, trials.md and search.json under the output directory."""
    out = result.output
    if result.complete:
        config_json = json.dumps(result.best_config.to_dict(), indent=2)
        io.write_bytes_atomic(io.join(out, BEST_CONFIG), config_json.encode())
    buf = _bytes_io.StringIO()
    result.trials.to_csv(buf, index=False)
    io.write_bytes_atomic(io.join(out, TRIALS_CSV), buf.getvalue().encode())
    io.write_bytes_atomic(io.join(out, TRIALS_MD), markdown_table(result.trials).encode())
    best = {k: _plain(v) for k, v in result.best.items()}
    search = {
        **search,
        "complete": result.complete,
        "space": describe_space(),
        "metric": METRIC,
        "best_trial": best,
    }
    io.write_bytes_atomic(io.join(out, SEARCH_JSON), json.dumps(search, indent=2).encode())


def _plain(value: Any) -> Any:
    """A numpy scalar as a JSON value (NaN as None)."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}" if abs(value) < 0.01 and value != 0 else f"{value:.4f}"
    return str(value)


TRIAL_COLUMNS = (
    "rank", "trial", "status", "epochs", METRIC, "sigma_mad", "eta_0.15", "crps", "lr",
    "weight_decay",
    "width", "depth", "dropout", "n_components", "batch_size", "flux_noise", "dae_noise",
    "dae_weight",
)  # fmt: skip
"""Columns of the printed summary and of trials.md (trials.csv has them all)."""


def markdown_table(trials: pd.DataFrame, columns: tuple[str, ...] = TRIAL_COLUMNS) -> str:
    """The trials as a Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in trials.iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def summary_text(result: SearchResult, top: int = 5) -> str:
    """The job's closing lines: the best trials as a table, then where the results are."""
    t = result.trials
    rows = [[str(c) for c in TRIAL_COLUMNS]]
    rows += [[_cell(row[c]) for c in TRIAL_COLUMNS] for _, row in t.head(top).iterrows()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TRIAL_COLUMNS))]
    table = ["  " + "  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    counts = t["status"].value_counts().to_dict()
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    b = result.best
    head = "tune done" if result.complete else "tune interrupted (rerun the command to continue)"
    where = (
        f"  best config: {io.join(result.output, BEST_CONFIG)} (jobs/train_ensemble.py --config)"
        if result.complete
        else "  best config: written when the search completes"
    )
    return "\n".join(
        [
            f"{head}: {len(t)} trials ({status}) in {result.seconds:.0f} s"
            + (" (resumed)" if result.resumed else ""),
            *table,
            f"  best: trial {b['trial']}, validation {METRIC} {b[METRIC]:.4f} "
            f"(after {b['best_epoch']} epochs), sigma_mad {_cell(b['sigma_mad'])}, "
            f"eta_0.15 {_cell(b['eta_0.15'])}, crps {_cell(b['crps'])}",
            where,
            f"  all trials: {io.join(result.output, TRIALS_CSV)}",
        ]
    )
