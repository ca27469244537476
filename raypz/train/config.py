"""Configuration of ensemble training (one frozen dataclass; the CLI parses into it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from raypz.columns import DEFAULT_COLUMNS, ColumnTemplate
from raypz.config_rules import require_finite
from raypz.models.catalog_net import CatalogNetConfig
from raypz.models.image_net import ImageNetConfig
from raypz.pdf import ZGrid


@dataclass(frozen=True)
class TrainConfig:
    """How to train a photo-z ensemble: catalog networks, or CNNs on cutouts when ``image`` is set.

    Attributes:
        members: ensemble size M; member i is seeded from ``seed + i``. In k-fold mode the
            ensemble has ``kfold`` members and this is ignored.
        kfold: K > 1 divides the rows outside the validation split into K folds and trains
            member k on every fold but k, stopping early on fold k and the validation
            split (Deepz); the members see
            different rows and together all of them. 0: every member trains on every row
            outside the validation split. Either way the validation split is held out of
            every member, so calibration and validation metrics score the deployed ensemble
            (before, k-fold calibrated single members on their own folds and its averaged
            PDFs came out too wide: coverage68 0.74 on test).
        val_fraction: share of labelled rows held out for validation and calibration (by
            objectId hash).
        epochs: maximum passes over the training rows (the cosine schedule spans them).
        patience: stop after this many epochs without a lower validation loss. Large (1/3 of
            the default schedule): while the learning rate is high the validation loss is
            noisy, and 8 stopped members of 20k-row runs after 20-30 of 60 epochs, far from
            their best.
        batch_size: rows per optimiser step per worker. 128 by default: on Buzzard's 10k
            training rows (outer 4-fold validation, docs/buzzard_results.md) 128 rows per step
            (~70 steps an epoch) lowered sigma_MAD, eta_0.15, eta_0.05 and CRPS against 512;
            64 was no better. Raise it on GPUs and for millions of rows, where steps, not
            rows, are what costs.
        lr: peak AdamW learning rate (cosine decay over ``epochs``).
        weight_decay: AdamW weight decay.
        workers: Ray Train workers per member (DDP when > 1).
        trainer: how members train. "tasks": each member in one Ray task with the in-process
            trainer on its rows in memory (no Ray Train: small spec-z sets do not pay its
            fixed costs per member); "ray_train": Ray Train workers streaming Ray Data shards,
            checkpointed every epoch (DDP, images, large sets); "auto": "tasks" for catalog
            networks with one worker per member on at most ``tasks_max_rows`` labelled rows
            (pre-training rows included), else "ray_train".
        tasks_max_rows: the largest labelled set that "auto" trains in tasks (each task holds
            its member's rows in memory: ~0.3 GB per million rows).
        cpus_per_worker: CPUs reserved per worker; None: 1 with GPUs, else 0.5
            (:mod:`raypz.train.schedule`).
        use_gpu: train on GPUs (True), on CPUs (False), or on GPUs when the cluster has any
            (None; "auto" on the command line).
        max_concurrent_members: most members trained at once; None: as many as the cluster
            holds (leaving one CPU for Ray Data on CPU-only clusters), re-checked as members
            start and finish and every few seconds, so that nodes that join take members.
        worker_resources: extra Ray resources each training worker requests besides its CPUs
            and GPU, e.g. ``trainer=1`` for a custom resource that only some nodes advertise
            (one per node places the workers one per node), or
            ``accelerator_type:H100=0.001``. CPU and GPU come from ``cpus_per_worker``
            and ``use_gpu``.
        flux_noise: augmentation: extra Gaussian flux noise of up to this many catalog
            errors per row (the error column is inflated to match). 0 by default: use it when
            the target photometry is shallower than the training photometry.
        coadd_fraction: with single-exposure columns, each row's coadd is rebuilt from a
            random subset holding this (min, max) fraction of its epochs.
        balanced: weight rows inversely to the density of (z, r mag) so rare regions count
            (importance weights, equivalent in expectation to balanced resampling).
        balance_max_weight: cap on those weights.
        finetune_lr_factor: learning-rate factor for fine-tuning after pre-training.
        pretrain_epochs: epochs of pre-training (None: ``epochs``).
        pretrain_each_member: with a pre-training table, pre-train one network per member
            (seeded like the member) rather than one for all, so that the members start from
            different weights, as they do without pre-training. From one shared start they
            disagree less, and the ``ensemble_disagreement`` flag finds fewer outliers
            (Buzzard test: 12% of them instead of 21%, docs/simulation.md). Costs M
            pre-trainings instead of one; they run side by side as members do.
        fit_sample_rows: rows used to fit the feature normalisation.
        calibrate: after training, fit one width scale of the member PDFs (MDN widths,
            binned temperature) that maximises the ensemble's log score on the validation
            rows, and store it in the members' weights. It corrects the
            broadening of the ensemble mean and of the grid.
        calibration_rows: most validation rows used to fit that scale.
        domain_weight: largest gradient-reversal weight lambda of domain-adversarial training
            (reached along the DANN schedule); used when ``image.domain_adapt`` is set.
        flip_rotate: augment cutouts by random flips and 90-degree rotations.
        cutout_fit_rows: training cutouts used to fit the cutout normalisation.
        seed: base random seed.
        net: the catalog network architecture (used when ``image`` is None).
        image: the CNN architecture; set to train on cutouts (fused with the catalog
            features when ``image.fusion``).
        grid: the z grid of the PDFs; dz = 0.005 by default, since the PDFs of bright objects
            are ~0.005 wide and a coarser grid widens them (linear CDF between grid points).
        columns: column names of the input tables.
    """

    members: int = 5
    kfold: int = 0
    val_fraction: float = 0.15
    epochs: int = 60
    patience: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    workers: int = 1
    trainer: Literal["auto", "tasks", "ray_train"] = "auto"
    tasks_max_rows: int = 500_000
    cpus_per_worker: float | None = None
    use_gpu: bool | None = None
    max_concurrent_members: int | None = None
    worker_resources: dict[str, float] = field(default_factory=dict, hash=False)
    flux_noise: float = 0.0
    coadd_fraction: tuple[float, float] = (0.5, 1.0)
    balanced: bool = False
    balance_max_weight: float = 10.0
    finetune_lr_factor: float = 0.3
    pretrain_epochs: int | None = None
    pretrain_each_member: bool = True
    fit_sample_rows: int = 1_000_000
    calibrate: bool = True
    calibration_rows: int = 20_000
    domain_weight: float = 1.0
    flip_rotate: bool = True
    cutout_fit_rows: int = 5000
    seed: int = 0
    net: CatalogNetConfig = field(default_factory=CatalogNetConfig)
    image: ImageNetConfig | None = None
    grid: ZGrid = field(default_factory=lambda: ZGrid(0.0, 3.5, 701))
    columns: ColumnTemplate = DEFAULT_COLUMNS

    def __post_init__(self) -> None:
        require_finite(self)
        checks = {
            "members >= 1": self.members >= 1,
            "kfold == 0 or kfold >= 2": self.kfold == 0 or self.kfold >= 2,
            "0 < val_fraction < 1": 0 < self.val_fraction < 1,
            "epochs >= 1": self.epochs >= 1,
            "patience >= 1": self.patience >= 1,
            "pretrain_epochs >= 1 when set": self.pretrain_epochs is None
            or self.pretrain_epochs >= 1,
            "fit_sample_rows >= 1": self.fit_sample_rows >= 1,
            "calibration_rows >= 1": self.calibration_rows >= 1,
            "cutout_fit_rows >= 1": self.cutout_fit_rows >= 1,
            "weight_decay >= 0": self.weight_decay >= 0,
            "finetune_lr_factor > 0": self.finetune_lr_factor > 0,
            "balance_max_weight >= 1": self.balance_max_weight >= 1,
            "batch_size >= 2": self.batch_size >= 2,
            "workers >= 1": self.workers >= 1,
            "max_concurrent_members >= 1 when set": self.max_concurrent_members is None
            or self.max_concurrent_members >= 1,
            "trainer in (auto, tasks, ray_train)": self.trainer in ("auto", "tasks", "ray_train"),
            "trainer tasks: catalog networks, workers == 1": self.trainer != "tasks"
            or (self.image is None and self.workers == 1),
            "lr > 0": self.lr > 0,
            "cpus_per_worker > 0 when set": self.cpus_per_worker is None
            or self.cpus_per_worker > 0,
            "flux_noise >= 0": self.flux_noise >= 0,
            "domain_weight >= 0": self.domain_weight >= 0,
            "worker_resources: names other than CPU and GPU, amounts > 0": all(
                k not in ("CPU", "GPU") and float(v) > 0 for k, v in self.worker_resources.items()
            ),
            "0 < coadd_fraction[0] <= coadd_fraction[1] <= 1": 0
            < self.coadd_fraction[0]
            <= self.coadd_fraction[1]
            <= 1,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"TrainConfig: rule(s) broken: {', '.join(failed)}")

    @property
    def network(self) -> CatalogNetConfig | ImageNetConfig:
        """The architecture that is trained: ``image`` when set, else ``net``."""
        return self.image if self.image is not None else self.net

    def trains_in_tasks(self, labelled_rows: int) -> bool:
        """Whether members train as Ray tasks (see ``trainer``) on a set of that many rows."""
        if self.trainer != "auto":
            return self.trainer == "tasks"
        return self.image is None and self.workers == 1 and labelled_rows <= self.tasks_max_rows

    @property
    def domain_adapt(self) -> bool:
        """True when training is domain-adversarial (needs a target table)."""
        return self.image is not None and self.image.domain_adapt

    @property
    def n_members(self) -> int:
        """Ensemble size: ``kfold`` in k-fold mode, else ``members``."""
        return self.kfold if self.kfold else self.members

    def to_dict(self) -> dict:
        """JSON-ready form (stored in model.json; holds no credentials)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`. Fields that ``d`` leaves out, nested ones included (a
        hand-written ``{"epochs": 3, "net": {"dropout": 0.2}}``), keep their defaults."""
        d = _merged(cls().to_dict(), d)
        return cls(
            **{
                **d,
                "coadd_fraction": tuple(d["coadd_fraction"]),
                "net": CatalogNetConfig.from_dict(d["net"]),
                "image": ImageNetConfig.from_dict(d["image"]) if d.get("image") else None,
                "grid": ZGrid.from_dict(d["grid"]),
                "columns": ColumnTemplate(**d["columns"]),
            }
        )


def _merged(default: Any, given: Any, where: str = "TrainConfig") -> Any:
    """``given`` over ``default``, nested objects merged key by key; TypeError naming the field
    (``where``) when a given value is of another JSON kind than its default (a hand-written
    ``"epochs": "three"`` failed later in a comparison that named no field)."""
    if isinstance(default, dict) and isinstance(given, dict):
        merged = {k: _merged(default.get(k), v, f"{where}.{k}") for k, v in given.items()}
        return {**default, **merged}
    if not _same_kind(default, given):
        raise TypeError(f"{where}: expected {type(default).__name__}, got {given!r}")
    return given


def _same_kind(default: Any, given: Any) -> bool:
    """Whether ``given`` may replace ``default`` as far as JSON tells: numbers for numbers (an
    int where a float is expected, not the other way), text for text, lists for sequences,
    true/false for flags; anything goes where either is null (optional fields)."""
    if default is None or given is None:
        return True
    if isinstance(default, bool) or isinstance(given, bool):
        return isinstance(default, bool) and isinstance(given, bool)
    if isinstance(default, int):
        return isinstance(given, int)
    if isinstance(default, float):
        return isinstance(given, (int, float))
    if isinstance(default, str):
        return isinstance(given, str)
    if isinstance(default, (list, tuple)):
        return isinstance(given, (list, tuple))
    return True
