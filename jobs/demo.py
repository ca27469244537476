"""The whole raypz flow on a small simulated survey: simulate -> train -> infer -> evaluate.

Examples:
    python jobs/demo.py                          # embedded local Ray, CPU, ./raypz-demo
    python jobs/demo.py --workdir /tmp/d --n-train 100000 --members 3 --epochs 40
    ray job submit --working-dir . -- python jobs/demo.py --workdir s3://bucket/demo

It runs the same library calls as the four stage jobs (jobs/simulate_survey.py,
jobs/train_ensemble.py, jobs/infer_lsst.py, jobs/evaluate.py) in one process and one Ray
session, writing under WORKDIR:

    train/    labelled deep-field survey (the spec-z training set)
    test/     a disjoint deep-field survey with its true redshifts
    model/    the ensemble artifact (model.json + member safetensors)
    catalog/  the HATS PDF catalog of test/ (opens with lsdb.open_catalog)
    report/   metrics.json, report.md and plots: the ensemble next to a kNN baseline

Training takes TrainConfig's defaults (5 members x 60 epochs, each member in one Ray task):
116 s of the demo's ~140 s on 2 quiet cores, and an ensemble well ahead of the kNN baseline
(sigma_MAD 0.0115 vs 0.0216, eta_0.15 0.0147 vs 0.0261, mean CRPS 0.0362 vs 0.0507, PIT KS
0.025 vs 0.071).

Every stage resumes: rerunning after an interruption redoes only what is missing.
"""

from __future__ import annotations

import argparse
import sys

from raypz import io
from raypz.cli import ConfigFlags, add_ray_flags, output_path
from raypz.evaluation import EvaluationRequest, evaluate_predictions
from raypz.infer import InferConfig, run_inference
from raypz.job_errors import run_job, usage_errors
from raypz.ray_runtime import init_ray
from raypz.sim import SurveyConfig, simulate_survey
from raypz.train import TrainConfig, train_ensemble

SURVEY = ConfigFlags(SurveyConfig, include=("depth",), base=SurveyConfig(field="deep"))
TRAIN = ConfigFlags(TrainConfig, include=("members", "epochs"), base=TrainConfig())
INFER = ConfigFlags(
    InferConfig, include=("max_rows_per_partition",), base=InferConfig(max_rows_per_partition=5_000)
)
"""The few config fields that size the demo (the stage jobs take every field), with defaults
that run in a few minutes on 2 CPU cores."""


def build_parser() -> argparse.ArgumentParser:
    """The demo's parser: its work directory, sizes and seed, then the configs' fields."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--workdir", type=output_path, default="raypz-demo", help="output root (local or s3://)"
    )
    p.add_argument("--n-train", type=int, default=20_000, help="labelled training rows")
    p.add_argument("--n-test", type=int, default=20_000, help="rows to predict and score")
    p.add_argument("--seed", type=int, default=1, help="seed of the training survey (test: +1)")
    add_ray_flags(p)
    for flags in (SURVEY, TRAIN, INFER):
        flags.add_to(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line."""
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the four stages; returns the process exit code."""
    a = parse_args(argv)
    # every config first: a bad flag stops the demo before minutes of work, not after
    with usage_errors():
        surveys = {
            key: SURVEY.build(a, n_objects=n, seed=seed)
            for key, n, seed in (("train", a.n_train, a.seed), ("test", a.n_test, a.seed + 1))
        }
        config, infer = TRAIN.build(a), INFER.build(a)
    init_ray(num_cpus=a.num_cpus, verbose=a.verbose)
    paths = {k: io.join(a.workdir, k) for k in ("train", "test", "model", "catalog", "report")}
    for key, survey in surveys.items():
        simulate_survey(survey, paths[key])
        print(f"[demo] simulated {survey.n_objects} {key} rows -> {paths[key]}")
    result = train_ensemble(paths["train"], paths["model"], config, name="demo")
    print(f"[demo] trained {a.members} members in {result.seconds:.0f} s -> {result.artifact}")
    summary = run_inference(paths["test"], paths["model"], paths["catalog"], infer)
    earlier = summary.sources_skipped == summary.sources  # a rerun of the demo
    rate = "predicted by an earlier run" if earlier else f"at {summary.rows_per_second:.0f} rows/s"
    print(f"[demo] catalog of {summary.rows_out} rows {rate} -> {paths['catalog']}")
    request = EvaluationRequest(
        predictions=paths["catalog"],
        truth=paths["test"],
        report=paths["report"],
        name="ensemble",
        train=paths["train"],
        model=paths["model"],
    )
    print(f"[demo] report: {io.join(paths['report'], 'report.md')}; headline metrics:")
    evaluate_predictions(request)
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main))
