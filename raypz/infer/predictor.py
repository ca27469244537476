"""The science of inference as a plain callable: object-table batch -> PDF-catalog batch.

No Ray here: ``CatalogPredictor(model)(table)`` runs in-process on one Parquet file (the debug
path), and the Ray Data pipeline calls the same object inside its actors. Every input row
yields one output row; rows without any usable band (or, for an image model, without a usable
cutout: NO_CUTOUT) keep null PDFs and the NO_PDF flag.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import torch

from raypz import compact
from raypz import flags as fl
from raypz.models import EnsemblePredictor, ModelArtifact, load_artifact
from raypz.models.ensemble import to_device
from raypz.models.reference import FAR_FROM_TRAINING_DISTANCE
from raypz.pdf import SUMMARY_COLUMNS, summarize_tensor
from raypz.predictions import MODEL_HASH_KEY, grid_metadata
from raypz.rowops import host_tensor
from raypz.schema import ContractError

PREDICT_CHUNK_ROWS = 1024
"""Rows predicted, summarised and encoded at a time inside a batch on CPU: the (rows, G) PDFs
and their float64 summaries stay in the CPU cache (1.4x faster than whole 16k-row batches)."""


QUALITY_COLUMNS = ("member_spread", "train_distance")
"""Continuous quality columns: the spread of the members' modes in units of (1 + z) (flag
ENSEMBLE_DISAGREEMENT above 0.1), and the distance to the training set in feature space in
units of a typical training object's (:mod:`raypz.models.reference`; flag FAR_FROM_TRAINING;
null for artifacts without a training reference). Both are null where there is no PDF."""


def output_schema(artifact: ModelArtifact) -> pa.Schema:
    """Columns of a catalog batch, in order (the pipeline prepends ``_healpix_29``), with the
    model's z grid and hash in the schema metadata: a batch written to Parquet is a predictions
    table that :func:`raypz.predictions.read_predictions` reads."""
    c = artifact.transform.columns
    fields = [
        pa.field(c.object_id, pa.int64()),
        pa.field(c.ra, pa.float64()),
        pa.field(c.dec, pa.float64()),
        *[pa.field(name, pa.float32()) for name in SUMMARY_COLUMNS],
        *[pa.field(name, pa.float32()) for name in QUALITY_COLUMNS],
        pa.field("flags", pa.int32()),
        pa.field("pdf_start", pa.uint16()),
        pa.field("pdf", pa.binary()),
    ]
    metadata = {**grid_metadata(artifact.grid), MODEL_HASH_KEY: artifact.model_hash.encode()}
    return pa.schema(fields, metadata=metadata)


def input_columns(artifact: ModelArtifact) -> list[str]:
    """The object-table columns a model reads: id, position, fluxes and errors of its bands,
    and the cutout column for an image model."""
    c, bands = artifact.transform.columns, artifact.transform.bands
    cutout = [artifact.cutouts.column] if artifact.cutouts is not None else []
    return [c.object_id, c.ra, c.dec, *c.flux_columns(bands), *c.flux_err_columns(bands), *cutout]


class CatalogPredictor:
    """Loads an artifact once; maps object-table batches to catalog batches.

    A catalog batch holds the PDFs in compact form (``pdf``, ``pdf_start``) and the z grid in
    its schema metadata; ``read_predictions`` of it written to Parquet, or
    :func:`raypz.predictions.decode_pdfs` of its two columns on ``artifact.grid``, gives the
    (N, G) PDFs.

    Args:
        model: artifact directory (local or URI) or an already loaded artifact.
        device: "auto" (CUDA when available), "cpu" or "cuda[:n]".
        amp: bf16 autocast for the networks' trunks (off by default: slower and less accurate
            on the GPUs measured, see :class:`EnsemblePredictor`).
    """

    def __init__(self, model: str | ModelArtifact, device: str = "auto", amp: bool = False) -> None:
        artifact = load_artifact(model) if isinstance(model, str) else model
        self.artifact = artifact
        self.ensemble = EnsemblePredictor(artifact, device, amp)
        self.schema = output_schema(artifact)
        self.columns = artifact.transform.columns

    @property
    def input_columns(self) -> list[str]:
        """The input columns this model reads."""
        return input_columns(self.artifact)

    def __call__(self, batch: pa.Table | pa.RecordBatch | Mapping) -> pa.Table:
        """Catalog rows (one per input row, same order) for a batch of the object table: an
        Arrow table or record batch, a pandas DataFrame or a mapping of column arrays, holding
        at least :attr:`input_columns` (a :class:`~raypz.schema.ContractError` names the first
        missing one)."""
        if not isinstance(batch, (pa.Table, pa.RecordBatch)):
            batch = pa.table(batch)
        missing = [name for name in self.input_columns if name not in batch.schema.names]
        if missing:
            raise ContractError("the batch", missing[0], "missing (the model reads it)")
        if batch.num_rows == 0:  # an empty file or slice (Ray Data skips empty blocks)
            return self.schema.empty_table()
        x, flags = self.artifact.transform(batch)
        device = self.ensemble.device
        images = usable = None
        if self.artifact.cutouts is not None:  # raw pixels to the device, stretched there
            raw, valid = self.artifact.cutouts.raw_from_batch(batch)
            flags |= np.where(valid, 0, fl.NO_CUTOUT | fl.NO_PDF).astype(np.int32)
            images, usable = self.artifact.cutouts.stretch_tensor(to_device(raw, device))
        parts = []
        # on a GPU, the whole batch in one pass (small chunks would leave it idle)
        step = max(len(x), 1) if device.type == "cuda" else PREDICT_CHUNK_ROWS
        for lo in range(0, len(x), step):
            rows = slice(lo, lo + step)
            parts.append(
                self._predict_rows(
                    x[rows],
                    None if images is None else images[rows],
                    None if usable is None else usable[rows],
                    flags[rows],
                )
            )
        cols: dict[str, pa.Array] = {
            name: pa.array(_as_numpy(batch[name]), type=self.schema.field(name).type)
            for name in (self.columns.object_id, self.columns.ra, self.columns.dec)
        }
        for name in (*SUMMARY_COLUMNS, *QUALITY_COLUMNS, "flags", "pdf_start", "pdf"):
            cols[name] = pa.concat_arrays([part[name] for part in parts])
        return pa.Table.from_pydict(cols, schema=self.schema)

    def _predict_rows(
        self,
        x: np.ndarray,
        images: torch.Tensor | None,
        usable: torch.Tensor | None,
        flags: np.ndarray,
    ) -> dict[str, pa.Array]:
        """Summary, flag and compact-PDF columns of some rows. Everything per object runs on
        the ensemble's device (:func:`summarize_tensor`, :func:`compact.encode_tensor`); the
        host receives the columns' buffers (~150 bytes per object instead of the (N, G)
        PDFs). ``usable`` marks rows whose cutout holds data (image models).
        Rows that get NO_PDF are predicted with the others (on zeroed inputs) and then
        blanked: null summaries and PDF."""
        xt = to_device(x, self.ensemble.device)
        pdf, ens_flags, spread = self.ensemble.predict_tensor(xt, images)
        reference = self.artifact.reference
        distance = reference.distance(xt) if reference is not None else None
        if distance is not None:
            far = distance > FAR_FROM_TRAINING_DISTANCE
            ens_flags = ens_flags | torch.where(far, fl.FAR_FROM_TRAINING, 0).int()
        row_flags = host_tensor(flags).to(pdf.device)
        if usable is not None:
            row_flags = row_flags | torch.where(usable, 0, fl.NO_CUTOUT | fl.NO_PDF).int()
        if usable is not None or (flags & fl.NO_PDF).any():
            ok = (row_flags & fl.NO_PDF) == 0
            pdf = torch.where(ok[:, None], pdf, 0.0)
            ens_flags = torch.where(ok, ens_flags, 0)
        stats = summarize_tensor(pdf, self.artifact.grid).T.contiguous()  # (S, N)
        start, values = compact.encode_tensor(pdf).to_arrow()
        stats, flags = stats.cpu().numpy(), (row_flags | ens_flags).cpu().numpy()
        no_pdf = (flags & fl.NO_PDF) != 0
        null = no_pdf if no_pdf.any() else None
        cols = {name: pa.array(stats[i], mask=null) for i, name in enumerate(SUMMARY_COLUMNS)}
        cols["member_spread"] = pa.array(spread.cpu().numpy(), pa.float32(), mask=null)
        cols["train_distance"] = (
            pa.array(distance.cpu().numpy(), pa.float32(), mask=null)
            if distance is not None
            else pa.nulls(len(flags), pa.float32())
        )
        cols["flags"] = pa.array(flags, pa.int32())
        cols["pdf_start"] = pa.array(start, pa.uint16())
        cols["pdf"] = values
        return cols


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return values.to_numpy(zero_copy_only=False)
    return np.asarray(values)
