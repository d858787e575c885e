"""Deployment (issue 8): a real multi-node Ray cluster on this host, token auth, autoscaling
with Ray's fake multi-node provider, and offline validation of cluster/ configs.

Every Ray process started here runs with its own HOME, RAY_TMPDIR and ports, and is stopped by
its process (group) id in a teardown; see tests/deploy_helpers.py.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from deploy_helpers import (BIN, PYTHON, REPO, Procs, alive_nodes, base_env, free_port,
                            http_json, marked_pids, wait_for)

CLUSTER = REPO / "cluster"
OBJECT_STORE = str(100 * 1024**2)


def _listen_addresses(port: int) -> set[str]:
    """Local IPv4 addresses on which something listens on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if state == "0A" and int(p, 16) == port:
            found.add(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


# --------------------------------------------------------------------------- multi-node + auth
@pytest.fixture(scope="module")
def auth_cluster():
    """`ray start --head` (0 CPUs, token auth, default dashboard host) + two 1-CPU worker nodes."""
    tmp = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    home = tmp / "home"
    home.mkdir()
    token = secrets.token_hex(32)
    token_path = tmp / "token"
    token_path.write_text(token)
    token_path.chmod(0o600)
    env = base_env(home, "token", token_path)
    port, dash = free_port(), free_port()
    procs = Procs([str(tmp)])
    logs = [tmp / "head.log", tmp / "w1.log", tmp / "w2.log"]
    try:
        (tmp / "h").mkdir()
        procs.start([str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                     f"--port={port}", "--num-cpus=0",  # no --dashboard-host: the default
                     f"--dashboard-port={dash}", f"--ray-client-server-port={free_port()}",
                     f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={tmp / 'h'}",
                     f"--object-store-memory={OBJECT_STORE}"],
                    {**env, "RAY_TMPDIR": str(tmp / "h")}, logs[0])
        dashboard = f"http://127.0.0.1:{dash}"
        wait_for(lambda: alive_nodes(dashboard, token), 90, "the head node", logs=logs)
        for i in (1, 2):
            (tmp / f"w{i}").mkdir()
            procs.start([str(BIN / "ray"), "start", "--block", f"--address=127.0.0.1:{port}",
                         "--node-ip-address=127.0.0.1", "--num-cpus=1",
                         f"--dashboard-agent-listen-port={free_port()}",
                         f"--object-store-memory={OBJECT_STORE}"],
                        {**env, "RAY_TMPDIR": str(tmp / f"w{i}")}, logs[i])
            # One at a time: two raylets registering at once into the head's session dir
            # raced here (one timed out after 30 s).
            wait_for(lambda: len(alive_nodes(dashboard, token) or []) >= 1 + i, 90,
                     f"{1 + i} alive nodes", logs=logs)
        yield {"tmp": tmp, "env": env, "token": token, "dashboard": dashboard, "dash_port": dash}
    finally:
        procs.stop()
        assert not marked_pids([str(tmp)]), "a Ray process of this test outlived its teardown"
        if not os.environ.get("SPTF_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)


def _job_submit(env, dashboard, *entrypoint, working_dir=True, timeout=240):
    # The working dir ships jobs/ and configs/; the package itself is installed on the nodes
    # (here: PYTHONPATH of every `ray start`, on a cluster: setup_commands / the image), so
    # numba's on-disk cache next to the sources is reused instead of a cold compile per node.
    runtime_env = {"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"},
                   "excludes": ["/sptf_ray/", "/tests/", "/benchmarks/"]}
    args = [str(BIN / "ray"), "job", "submit", f"--address={dashboard}"]
    if working_dir:
        args += [f"--working-dir={REPO}"]
    args += [f"--runtime-env-json={json.dumps(runtime_env)}", "--", *entrypoint]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=str(REPO))


def test_dashboard_listens_on_loopback_only(auth_cluster):
    # Ray's default (no --dashboard-host): the dashboard, which is also the job server,
    # listens on 127.0.0.1 only.
    assert _listen_addresses(auth_cluster["dash_port"]) == {"127.0.0.1"}


def test_job_submit_runs_build_network_on_two_nodes(auth_cluster):
    c = auth_cluster
    out = c["tmp"] / "network"
    # A config file (any storage URI works) + flag overrides; VGM truth only, so each node
    # compiles one model (a cold numba compile dominates this job's time).
    config = c["tmp"] / "network.yaml"
    config.write_text("n_sites: 8\nn_years: 3\nvgm_fraction: 1.0\nseed: 3\n")
    r = _job_submit(c["env"], c["dashboard"], "python", "jobs/build_network.py", str(config),
                    "--out", str(out), "--sites-per-task", "4")
    assert r.returncode == 0 and "succeeded" in r.stdout, r.stdout[-4000:] + r.stderr[-4000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["extra"]["n_sites"] == 8
    status, body = http_json(f"{c['dashboard']}/api/v0/tasks?limit=1000&detail=1", c["token"])
    assert status == 200, body
    tasks = [t for t in body["data"]["result"]["result"]
             if t.get("name", "").endswith("_run_batch") and t.get("state") == "FINISHED"]
    assert len(tasks) == 2, tasks
    nodes = {t["node_id"] for t in tasks}
    head = [n["node_id"] for n in alive_nodes(c["dashboard"], c["token"]) if n.get("is_head_node")]
    assert len(nodes) == 2 and not nodes & set(head), (nodes, head)


def test_token_auth_refuses_clients_without_the_token(auth_cluster):
    c = auth_cluster
    # Plain HTTP: no token -> 401, wrong token -> 403, right token -> 200.
    assert http_json(f"{c['dashboard']}/api/jobs/")[0] == 401
    assert http_json(f"{c['dashboard']}/api/jobs/", "not-the-token")[0] in (401, 403)
    assert http_json(f"{c['dashboard']}/api/jobs/", c["token"])[0] == 200
    # `ray job submit`: with the token it runs (shown above and here), without it is refused.
    ok = _job_submit(c["env"], c["dashboard"], "echo", "hello", working_dir=False, timeout=120)
    assert ok.returncode == 0 and "hello" in ok.stdout, ok.stdout + ok.stderr
    no_home = c["tmp"] / "stranger"
    no_home.mkdir(exist_ok=True)
    for env in (base_env(no_home, "disabled"),
                {**base_env(no_home, "token"), "RAY_AUTH_TOKEN": "not-the-token"}):
        r = _job_submit(env, c["dashboard"], "echo", "pwned", working_dir=False, timeout=120)
        assert r.returncode != 0 and "pwned" not in r.stdout, r.stdout + r.stderr
        assert re.search(r"401|403|[Uu]nauthori|[Aa]uthenticat", r.stdout + r.stderr), r.stdout + r.stderr


# --------------------------------------------------------------------------- autoscaling
def _fake_cluster_config(gcs: str) -> dict:
    config = yaml.safe_load((CLUSTER / "local-fake-autoscaler.yaml").read_text())
    config["provider"]["gcs_address"] = gcs
    return config


WORKLOAD = """
import json, sys, time, ray
ray.init()
@ray.remote(num_cpus=1)
def work(i):
    time.sleep(5)
    return ray.get_runtime_context().get_node_id()
nodes = ray.get([work.remote(i) for i in range(int(sys.argv[1]))])
open(sys.argv[2], "w").write(json.dumps(nodes))
"""


def test_fake_multinode_autoscaling_up_and_down():
    tmp = Path(tempfile.mkdtemp(prefix="sa-", dir="/tmp"))
    (tmp / "home").mkdir()
    (tmp / "h").mkdir()
    port, dash = free_port(), free_port()
    config_path = tmp / "cluster.yaml"
    config_path.write_text(yaml.safe_dump(_fake_cluster_config(f"127.0.0.1:{port}")))
    env = {**base_env(tmp / "home", "disabled"), "RAY_TMPDIR": str(tmp / "h"),
           "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    procs = Procs([str(tmp)])
    logs = [tmp / "head.log", tmp / "driver.log"]
    dashboard = f"http://127.0.0.1:{dash}"
    try:
        procs.start([str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=0",
                     "--node-ip-address=127.0.0.1", f"--port={port}", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={dash}", f"--ray-client-server-port={free_port()}",
                     f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={tmp / 'h'}",
                     f"--object-store-memory={OBJECT_STORE}", f"--autoscaling-config={config_path}"],
                    env, logs[0])
        wait_for(lambda: alive_nodes(dashboard), 90, "the head node", logs=logs)
        assert len(alive_nodes(dashboard)) == 1  # min_workers 0: nothing before work is queued
        driver = procs.start([PYTHON, "-c", WORKLOAD, "6", str(tmp / "result.json")],
                             {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}, logs[1])
        peak, started = 1, time.time()
        while driver.poll() is None and time.time() - started < 150:
            peak = max(peak, len(alive_nodes(dashboard) or []))
            time.sleep(1)
        assert driver.returncode == 0, logs[1].read_text()[-3000:] + logs[0].read_text()[-3000:]
        used = set(json.loads((tmp / "result.json").read_text()))
        assert peak >= 3 and len(used) >= 2, (peak, used)  # workers added while work was queued
        # idle_timeout_minutes 0.1: every worker node is removed once idle.
        wait_for(lambda: len(alive_nodes(dashboard) or [0, 0]) == 1, 90,
                 "idle workers to be removed", interval=1, logs=logs)
    finally:
        procs.stop()
        assert not marked_pids([str(tmp)]), "a Ray process of this test outlived its teardown"
        if not os.environ.get("SPTF_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- offline checks
@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_config_validates(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((CLUSTER / name).read_text())
    config = prepare_config(raw)
    validate_config(config)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    assert head["resources"] == {"CPU": 0}
    assert {k: bool(v["resources"].get("GPU")) for k, v in workers.items()} == \
        {"cpu_worker": False, "gpu_worker": True}
    for node_type in workers.values():  # scales with queued work, down to nothing when idle
        assert node_type["min_workers"] == 0 < node_type["max_workers"]
    assert config["idle_timeout_minutes"] > 0
    start = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in start and "--dashboard-host=127.0.0.1" in start
    assert "0.0.0.0" not in start


def test_fake_autoscaler_config_validates():
    from ray.autoscaler._private.util import validate_config

    # prepare_config needs fake_multi_node/example.yaml, which the 2.60 wheel does not ship.
    validate_config(yaml.safe_load((CLUSTER / "local-fake-autoscaler.yaml").read_text()))


def _kuberay_validator():
    import jsonschema

    schema = json.loads((CLUSTER / "schemas" / "kuberay-v1.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator, doc):
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(doc)]


def test_kuberay_manifests_validate_against_vendored_crd_schema():
    validator = _kuberay_validator()
    cluster = yaml.safe_load((CLUSTER / "kuberay" / "raycluster.yaml").read_text())
    job = yaml.safe_load((CLUSTER / "kuberay" / "rayjob.yaml").read_text())
    assert _errors(validator, cluster) == []
    assert _errors(validator, job) == []
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        assert spec["enableInTreeAutoscaling"] is True
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        assert set(groups) == {"cpu", "gpu"}
        assert all(g["minReplicas"] == 0 < g["maxReplicas"] for g in groups.values())
        gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert gpu_limits["nvidia.com/gpu"] == "1"
        for pod in [spec["headGroupSpec"]] + list(groups.values()):
            env = {e["name"]: e for e in pod["template"]["spec"]["containers"][0]["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]  # a Secret, not a value
        assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert job["spec"]["entrypoint"].startswith("python jobs/run_pipeline.py configs/paper.yaml")


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d["spec"].update(enableInTreeAutoscalling=True), "typo in a RayCluster field"),
    (lambda d: d.update(apiVersion="ray.io/v1alpha1"), "old API version"),
    (lambda d: d["spec"]["headGroupSpec"].pop("template"), "head without a pod template"),
    (lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplicas="20"), "replicas as a string"),
    (lambda d: d["spec"]["workerGroupSpecs"][0]["rayStartParams"].update({"num-cpus": 4}),
     "non-string rayStartParams"),
    (lambda d: d["spec"]["autoscalerOptions"].update(upscalingMode="Fast"), "unknown upscalingMode"),
])
def test_kuberay_schema_rejects_broken_manifests(mutate, where):
    validator = _kuberay_validator()
    doc = yaml.safe_load((CLUSTER / "kuberay" / "raycluster.yaml").read_text())
    mutate(doc)
    assert _errors(validator, doc), where


def test_kuberay_schema_rejects_a_rayjob_without_a_cluster():
    doc = yaml.safe_load((CLUSTER / "kuberay" / "rayjob.yaml").read_text())
    doc["spec"].pop("rayClusterSpec")
    assert _errors(_kuberay_validator(), doc)


SECRET_PATTERNS = [
    r"AKIA[0-9A-Z]{16}", r"ASIA[0-9A-Z]{16}",                       # AWS access key ids
    r"(?i)aws_secret_access_key\s*[:=]", r"(?i)aws_session_token\s*[:=]",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----", r'"private_key"\s*:',       # PEM keys, GCP key files
    r"gh[pousr]_[A-Za-z0-9]{36}", r"xox[abpr]-[A-Za-z0-9-]{10,}",    # GitHub, Slack tokens
    r"AIza[0-9A-Za-z_-]{35}",                                          # Google API keys
    r"(?i)(secret|passw(or)?d|api[_-]?key|access[_-]?key|token)['\"]?\s*[:=]\s*['\"]?[A-Za-z0-9/+_-]{16,}",
]


def test_no_secrets_in_cluster_or_config_files():
    files = [p for d in ("cluster", "configs") for p in (REPO / d).rglob("*") if p.is_file()]
    assert any(p.suffix == ".yaml" for p in files)
    hits = []
    for path in files:
        text = path.read_text(errors="replace")
        hits += [f"{path.relative_to(REPO)}: {m.group(0)[:40]}" for pat in SECRET_PATTERNS
                 for m in re.finditer(pat, text)]
    assert hits == []


def test_secret_patterns_catch_real_looking_keys():
    samples = ["aws_access_key_id: AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key = abc",
               "RAY_AUTH_TOKEN: 3f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c", "password: hunter2hunter2hunter2"]
    for s in samples:
        assert any(re.search(p, s) for p in SECRET_PATTERNS), s


def test_every_torch_load_uses_weights_only():
    import ast

    calls = []
    for path in (REPO / "sptf_ray").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "torch"):
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                calls.append((f"{path.relative_to(REPO)}:{node.lineno}", ok))
    assert calls, "no torch.load found: the check would be vacuous"
    assert [c for c, ok in calls if not ok] == []


# --------------------------------------------------------------------------- jobs_common
def test_load_job_config_from_uri_with_overrides(tmp_path):
    from sptf_ray.data.network import NetworkConfig
    from sptf_ray.jobs_common import load_job_config

    path = tmp_path / "net.yaml"
    path.write_text("n_sites: 12\nseed: 4\n")
    config = load_job_config(NetworkConfig, str(path), {"seed": 9, "n_years": None})
    assert (config.n_sites, config.seed, config.n_years) == (12, 9, 3)
    assert load_job_config(NetworkConfig, None, {"n_sites": 5}).n_sites == 5
    with pytest.raises(ValueError, match="n_sites"):
        load_job_config(NetworkConfig, None, {"n_sites": 0})


def test_ray_address_prefers_explicit_then_env(monkeypatch):
    from sptf_ray.jobs_common import ray_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_address() is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ray_address() == "10.0.0.1:6379"
    assert ray_address("auto") == "auto"
