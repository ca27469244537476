"""raypz.cli: flags from config dataclass fields, and every job's flags from its configs."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from raypz.cli import ConfigFlags, attribute_docs, flag_kind
from raypz.evaluation import EvaluationRequest
from raypz.infer import InferConfig
from raypz.metrics.catalog_nz import NZConfig
from raypz.models import CatalogNetConfig, ImageNetConfig
from raypz.pdf import ZGrid
from raypz.sim import SurveyConfig
from raypz.train import TrainConfig

JOBS = Path(__file__).resolve().parents[1] / "jobs"


@dataclass(frozen=True)
class Toy:
    """A toy config.

    Attributes:
        count: how many
            things there are.
        ratio (float): a share of 100%.
        name: a name; at most ``count`` of them.
        loud: say it loud.
        quiet: keep quiet.
        mode: "a" or "b".
        gpu: None decides by itself.
        limit: None: no limit.
        widths: widths of the layers.
        span: (min, max) of the range.
        resources: extra resources, name -> amount.
        grid: the z grid (no flag).
    """

    count: int = 3
    ratio: float = 0.5
    name: str = "toy"
    loud: bool = False
    quiet: bool = True
    mode: Literal["a", "b"] = "a"
    gpu: bool | None = None
    limit: int | None = None
    widths: tuple[int, ...] = (8, 4)
    span: tuple[float, float] = (0.1, 0.9)
    resources: dict[str, float] = field(default_factory=dict)
    grid: ZGrid = field(default_factory=lambda: ZGrid(0.0, 1.0, 11))


@dataclass(frozen=True)
class Needs:
    """A config with a field that has no default.

    Attributes:
        path: where it goes.
        level: how much.
    """

    path: str
    level: int = 1


def _parse(flags: ConfigFlags, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    flags.add_to(parser)
    return parser.parse_args(argv)


def _helps(flags: ConfigFlags) -> dict[str, str]:
    """Flag -> its help as ``--help`` prints it (``%%`` rendered)."""
    parser = argparse.ArgumentParser()
    flags.add_to(parser)
    formatter = parser._get_formatter()
    return {
        a.option_strings[0]: formatter._expand_help(a)
        for a in parser._actions
        if a.option_strings and a.dest != "help"
    }


def test_attribute_docs_joins_multi_line_entries():
    docs = attribute_docs(Toy)
    assert docs["count"] == "how many things there are."
    assert docs["ratio"] == "a share of 100%."  # "(type)" after the name is dropped
    assert docs["grid"] == "the z grid (no flag)."
    assert list(docs)[:3] == ["count", "ratio", "name"]
    assert attribute_docs(int) == {}


def test_attribute_docs_of_a_real_config():
    docs = attribute_docs(TrainConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert docs["patience"].startswith("stop after this many epochs")
    assert docs["patience"].endswith("far from their best.")


def test_no_flag_round_trips_to_the_default_config():
    flags = ConfigFlags(Toy)
    assert flags.build(_parse(flags, [])) == Toy()
    assert ConfigFlags(TrainConfig).build(_parse(ConfigFlags(TrainConfig), [])) == TrainConfig()


def test_every_type_reads_from_the_command_line():
    flags = ConfigFlags(Toy)
    argv = [
        "--count", "7", "--ratio", "0.25", "--name", "x", "--loud", "--no-quiet", "--mode", "b",
        "--gpu", "yes", "--limit", "9", "--widths", "1", "2", "3", "--span", "0.2", "0.3",
        "--resources", "a=1", "b=0.5", "--resources", "c=2",
    ]  # fmt: skip
    got = flags.build(_parse(flags, argv))
    assert got == Toy(
        count=7, ratio=0.25, name="x", loud=True, quiet=False, mode="b", gpu=True, limit=9,
        widths=(1, 2, 3), span=(0.2, 0.3), resources={"a": 1.0, "b": 0.5, "c": 2.0},
    )  # fmt: skip
    assert isinstance(got.widths, tuple) and isinstance(got.span, tuple)


@pytest.mark.parametrize(("value", "expected"), [("yes", True), ("no", False), ("auto", None)])
def test_an_optional_bool_takes_yes_no_or_auto(value, expected):
    flags = ConfigFlags(Toy)
    assert flags.build(_parse(flags, ["--gpu", value])).gpu is expected


@pytest.mark.parametrize(
    "argv",
    [
        ["--count", "many"],
        ["--mode", "c"],
        ["--gpu", "maybe"],
        ["--span", "0.2"],
        ["--widths"],
        ["--resources", "a"],
        ["--resources", "=1"],
        ["--resources", "a=lots"],
        ["--grid", "x"],
    ],
)
def test_bad_values_are_refused_by_the_parser(argv):
    with pytest.raises(SystemExit):
        _parse(ConfigFlags(Toy), argv)


def test_fields_without_a_flag_form_are_skipped():
    fields = {s.field for s in ConfigFlags(Toy).flags()}
    assert "grid" not in fields and "resources" in fields
    assert flag_kind(typing.get_type_hints(TrainConfig)["net"]) is None
    assert flag_kind(typing.get_type_hints(TrainConfig)["columns"]) is None


def test_help_comes_from_the_docstring_with_the_default():
    helps = _helps(ConfigFlags(Toy))
    assert helps["--count"] == "how many things there are. (default: 3)"
    assert helps["--ratio"] == "a share of 100%. (default: 0.5)"
    assert helps["--name"] == "a name; at most --count of them. (default: toy)"
    assert helps["--loud"] == "say it loud. (default: --no-loud)"
    assert helps["--quiet"] == "keep quiet. (default: --quiet)"
    assert helps["--gpu"] == "None decides by itself. (default: auto)"
    assert helps["--limit"] == "None: no limit."
    assert helps["--widths"] == "widths of the layers. (default: 8 4)"
    assert helps["--resources"] == "extra resources, name -> amount. (default: none)"


def test_a_field_without_default_is_a_required_flag():
    flags = ConfigFlags(Needs)
    with pytest.raises(SystemExit):
        _parse(flags, [])
    assert flags.build(_parse(flags, ["--path", "p"])) == Needs("p")
    assert _helps(flags)["--path"] == "where it goes."


def test_prefix_names_extra_and_base():
    flags = ConfigFlags(
        Toy,
        prefix="toy",
        names={"count": "n"},
        extra={"name": {"choices": ("x", "toy")}},
        base=Toy(ratio=0.75),
        include=("count", "ratio", "name"),
    )
    args = _parse(flags, ["--n", "4", "--toy-name", "x"])
    assert (args.toy_count, args.toy_ratio) == (4, 0.75)
    assert flags.build(args, loud=True) == Toy(count=4, ratio=0.75, name="x", loud=True)
    assert _helps(flags)["--toy-name"] == "a name; at most --n of them. (default: toy)"
    with pytest.raises(SystemExit):
        _parse(flags, ["--toy-name", "y"])


def test_a_dict_flag_replaces_the_base_s_entries():
    """A --config file's dict entries were the default of an ``extend`` flag: the flag could
    neither change an entry (\"given more than once\") nor drop one."""
    flags = ConfigFlags(Toy, base=Toy(resources={"gpu_node": 1.0, "ssd": 1.0}))
    assert flags.build(_parse(flags, [])).resources == {"gpu_node": 1.0, "ssd": 1.0}
    argv = ["--resources", "gpu_node=0.5", "--resources", "big=2"]
    assert flags.build(_parse(flags, argv)).resources == {"gpu_node": 0.5, "big": 2.0}
    with pytest.raises(ValueError, match="gpu_node given more than once"):
        flags.build(_parse(flags, ["--resources", "gpu_node=0.5", "gpu_node=1"]))


def test_unknown_or_flagless_fields_are_refused():
    with pytest.raises(ValueError, match="no field"):
        ConfigFlags(Toy, exclude=("cuont",))
    with pytest.raises(ValueError, match="no flag form"):
        ConfigFlags(Toy, include=("grid",)).flags()


def test_changed_lists_the_flags_that_differ_from_their_defaults():
    flags = ConfigFlags(Toy)
    assert flags.changed(_parse(flags, ["--widths", "8", "4", "--quiet"])) == []
    argv = ["--widths", "8", "--no-quiet", "--resources", "a=1"]
    assert flags.changed(_parse(flags, argv)) == ["--quiet", "--widths", "--resources"]


def test_a_new_field_appears_as_a_flag():
    grown = dataclasses.make_dataclass(
        "Grown",
        [("knob", int, field(default=2))],
        bases=(Toy,),
        frozen=True,
        namespace={"__doc__": "Toy and one more.\n\n    Attributes:\n        knob: a knob.\n"},
    )
    flags = ConfigFlags(grown)
    assert _helps(flags)["--knob"] == "a knob. (default: 2)"
    assert flags.build(_parse(flags, ["--knob", "5", "--count", "1"])) == grown(count=1, knob=5)


# --- the jobs ---------------------------------------------------------------------------------


def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", JOBS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONFIGS = {
    "train_ensemble": [
        (TrainConfig, "", ()),
        (CatalogNetConfig, "", ()),
        (ImageNetConfig, "cnn", ("fusion",)),  # set by --inputs
    ],
    "cross_validate": [
        (TrainConfig, "", ("domain_weight", "flip_rotate", "cutout_fit_rows")),  # CNNs only
        (CatalogNetConfig, "", ()),
    ],
    "infer_lsst": [(InferConfig, "", ())],
    "simulate_survey": [(SurveyConfig, "", ())],
    "evaluate": [(EvaluationRequest, "", ())],
    "nz": [(NZConfig, "", ())],
}
"""Job -> the config classes whose every field must be a flag: (class, dest prefix, fields the
job sets otherwise)."""


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_config_field_of_a_job_is_a_flag_with_docstring_help(name):
    actions = {a.dest: a for a in _job(name).build_parser()._actions}
    for cls, prefix, skipped in CONFIGS[name]:
        hints, docs = typing.get_type_hints(cls), attribute_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name in skipped or flag_kind(hints[f.name]) is None:
                continue
            dest = f"{prefix}_{f.name}" if prefix else f.name
            assert dest in actions, f"{name}: {cls.__name__}.{f.name} has no flag"
            assert docs.get(f.name), f"{cls.__name__}.{f.name}: no Attributes entry"
            assert actions[dest].help.startswith(docs[f.name].replace("``", "").split()[0])


@pytest.mark.parametrize(
    "name", ["train_ensemble", "cross_validate", "infer_lsst", "simulate_survey", "demo", "nz"]
)
def test_every_ray_job_has_verbose_and_num_cpus(name):
    actions = {a.dest: a for a in _job(name).build_parser()._actions}
    assert actions["verbose"].default is False and actions["verbose"].nargs == 0
    assert "Ray's own logs" in actions["verbose"].help
    assert "num_cpus" in actions


@pytest.mark.parametrize("name", sorted(p.stem for p in JOBS.glob("*.py")))
def test_help_of_every_job(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _job(name).build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_jobs_without_config_flags_build_the_default_configs():
    infer = _job("infer_lsst")
    args = infer.parse_args(["--input", "i", "--model", "m", "--output", "o"])
    assert infer.config_from_args(args) == InferConfig()
    sim = _job("simulate_survey")
    args = sim.parse_args(["--n-objects", "10", "--seed", "3", "--output", "o"])
    assert sim.config_from_args(args) == SurveyConfig(n_objects=10, seed=3)
    request = _job("evaluate").parse_request(
        ["--predictions", "p", "--truth", "t", "--report", "r"]
    )
    assert request == EvaluationRequest("p", "t", "r")
    nz = _job("nz")
    assert nz.config_from_args(nz.parse_args(["--catalog", "c", "--output", "o"])) == NZConfig()
    args = nz.parse_args(["--catalog", "c", "--output", "o", "--bins", "0", "1", "2"])
    assert nz.config_from_args(args).edges == (0.0, 1.0, 2.0)


def test_infer_job_refuses_a_fixed_and_an_elastic_pool():
    infer = _job("infer_lsst")
    argv = ["--input", "i", "--model", "m", "--output", "o", "--concurrency", "2"]
    with pytest.raises(SystemExit, match="concurrency"):
        infer.config_from_args(infer.parse_args([*argv, "--max-actors", "3"]))


def test_evaluate_job_reads_repeated_and_grouped_compare_pairs():
    argv = ["--predictions", "p", "--truth", "t", "--report", "r", "--no-plots"]
    argv += ["--compare", "member 0=a.parquet", "m1=s3://b/x=1", "--compare", "m2=c"]
    request = _job("evaluate").parse_request(argv)
    assert request.compare == {"member 0": "a.parquet", "m1": "s3://b/x=1", "m2": "c"}
    assert request.plots is False


def test_evaluate_job_refuses_a_compare_name_given_twice_and_dot_names(capsys):
    argv = ["--predictions", "p", "--truth", "t", "--report", "r", "--compare", "a=x", "a=y"]
    with pytest.raises(SystemExit):  # the first would be dropped without a word
        _job("evaluate").parse_request(argv)
    assert "--compare: NAME=VALUE pairs: a given more than once" in capsys.readouterr().err
    from raypz.evaluation import slug

    # a model's plot directory stays inside the report
    names = ("..", "../up", ".hidden", "v1.2")
    assert [slug(n) for n in names] == ["model", "up", "hidden", "v1.2"]


@pytest.mark.parametrize("name", ["simulate_survey", "demo", "infer_lsst"])
def test_num_cpus_below_one_is_refused(name, capsys):
    parser = _job(name).build_parser()
    with pytest.raises(SystemExit):  # a local Ray of 0 CPUs schedules no task and waits
        parser.parse_args(["--num-cpus", "0", "--output", "o", "--input", "i", "--model", "m"])
    assert "--num-cpus: must be at least 1" in capsys.readouterr().err


def test_demo_checks_every_flag_before_any_work(tmp_path, monkeypatch):
    demo = _job("demo")
    monkeypatch.chdir(tmp_path)
    from raypz.job_errors import UsageError

    for bad in (["--n-test", "0"], ["--max-rows-per-partition", "0"], ["--members", "0"]):
        with pytest.raises(UsageError):  # one "demo.py: error: ..." line in a job
            demo.main(["--workdir", "w", *bad])
    assert not (tmp_path / "w").exists()


def test_demo_flags_come_from_the_configs_with_demo_defaults():
    demo = _job("demo")
    args = demo.parse_args([])
    assert demo.TRAIN.build(args) == TrainConfig()  # the defaults: 5 members x 60 epochs
    assert demo.INFER.build(args) == InferConfig(max_rows_per_partition=5_000)
    survey = demo.SURVEY.build(demo.parse_args(["--depth", "y5"]), n_objects=10, seed=1)
    assert survey == SurveyConfig(n_objects=10, seed=1, depth="y5", field="deep")
    helps = {a.dest: a.help for a in demo.build_parser()._actions}
    assert helps["members"].startswith(attribute_docs(TrainConfig)["members"][:20])


def test_members_device_flag_is_infer_configs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _job("predict_members").main(["--help"])
    assert exit_info.value.code == 0
    words = " ".join(capsys.readouterr().out.split())
    assert "--device DEVICE " + attribute_docs(InferConfig)["device"] in words


def test_relative_outputs_are_refused_under_ray_job_submit(monkeypatch):
    """Under ``ray job submit --working-dir`` a job runs in Ray's temporary copy of that
    directory: a relative output was written there and lost while the job succeeded."""
    from raypz.cli import output_path

    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert output_path("sim/deep") == "sim/deep"  # a local run: relative to where it runs
    job = {"runtime_env": {"working_dir": "gcs://_ray_pkg_ba8c2bee31731fa6.zip"}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(job))
    for fine in ("/data/sim/deep", "s3://bucket/sim/deep"):
        assert output_path(fine) == fine
    with pytest.raises(argparse.ArgumentTypeError, match=r"'sim/deep' is relative.*s3://"):
        output_path("sim/deep")
    for blank in ("", "  "):  # wrote into the working directory, or one named " "
        with pytest.raises(argparse.ArgumentTypeError, match="an empty path"):
            output_path(blank)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {}}))
    assert output_path("sim/deep") == "sim/deep"  # submitted without --working-dir


MISSING_INPUT_RUNS = {
    "infer_lsst": ["--input", "{missing}", "--model", "{here}", "--output", "{out}"],
    "train_ensemble": ["--train", "{here}", "--pretrain", "{missing}", "--output", "{out}"],
    "cross_validate": ["--train", "{missing}", "--output", "{out}"],
    "tune_ensemble": ["--train", "{missing}", "--output", "{out}"],
    "nz": ["--catalog", "{missing}", "--output", "{out}"],
}


@pytest.mark.parametrize("name", sorted(MISSING_INPUT_RUNS))
def test_a_job_names_a_missing_input_before_it_starts_ray(name, tmp_path, monkeypatch):
    job = _job(name)

    def no_ray(**_kwargs) -> None:
        raise AssertionError("the job started Ray before checking its inputs")

    monkeypatch.setattr(job, "init_ray", no_ray)
    paths = {"missing": str(tmp_path / "absent"), "here": str(tmp_path), "out": "/o"}
    argv = [arg.format(**paths) for arg in MISSING_INPUT_RUNS[name]]
    with pytest.raises(FileNotFoundError, match=f"{paths['missing']}: no such file"):
        job.main(argv)


def test_member_predictions_name_a_missing_input_before_loading_anything(tmp_path):
    missing = str(tmp_path / "absent")
    argv = ["--model", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path / "o")]
    with pytest.raises(FileNotFoundError, match=f"{missing}: no such file"):
        _job("predict_members").main([*argv, "--calibrate-on", missing])
    assert not (tmp_path / "o").exists()
