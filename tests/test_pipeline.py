"""`sptf run`: an extra-tiny config end to end, interrupted after the dataset, then resumed."""
import json
from pathlib import Path

import pytest

from sptf_ray import storage
from sptf_ray.config import load_config
from sptf_ray.pipeline import RESOLVED_CONFIG, STAGES, PipelineConfig, run_pipeline
from sptf_ray.provenance import provenance

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

TINY = {
    "models": ["vgm"],
    "network": {"n_sites": 10, "n_years": 3, "seed": 1, "sites_per_task": 10},
    "dataset": {"shards": 2, "per_shard": 24, "model": "vgm", "days": 365, "seed": 0},
    "surrogate": {"epochs": 1, "batch_size": 16, "hidden_size": 8, "lr": 3e-3},
    "sptf": {"epochs": 1, "batch_size": 8, "hidden_size": 8, "lr": 1e-3},
    "inversion": {"split": "test", "max_sites": 1, "samples": "last",
                  "sceua": {"max_evals": 60, "n_complexes": 2}, "ray": {"num_actors": 1}},
    "evaluate": {"n_timeseries": 1, "importance_repeats": 2, "input_lengths": [30, 365], "length_windows": 2},
}


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="stop_after"):
        load_config(PipelineConfig, {**TINY, "stop_after": "nope"})
    with pytest.raises(ValueError, match="dataset.model"):
        load_config(PipelineConfig, {**TINY, "models": ["vgm", "fxw"]})
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(PipelineConfig, {**TINY, "surrogate": {"epoch": 1}})
    with pytest.raises(ValueError, match="^sptf: epochs and batch_size must be >= 1"):  # which section, too
        load_config(PipelineConfig, {**TINY, "sptf": {**TINY["sptf"], "epochs": 0}})
    with pytest.raises(ValueError, match="^inversion: "):
        load_config(PipelineConfig, {**TINY, "inversion": {**TINY["inversion"], "max_sites": 0}})
    assert load_config(PipelineConfig, str(CONFIGS / "quickstart.yaml")).network.n_sites == 80
    assert load_config(PipelineConfig, str(CONFIGS / "paper.yaml")).dataset.days == 1095
    assert load_config(PipelineConfig, str(CONFIGS / "benchmark.yaml")).network.n_sites == 120


def test_cli_registers_run_and_evaluate():
    from sptf_ray.cli import build_parser

    args = build_parser().parse_args(["run", "cfg.yaml", "--out", "d", "--stop-after", "dataset"])
    assert args.command == "run" and args.stop_after == "dataset"
    assert build_parser().parse_args(["evaluate", "d"]).command == "evaluate"


def test_a_later_stage_that_cannot_run_here_fails_before_the_first(ray_session, tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    log = []
    for change, what in ((("predict", {"device": "cuda"}), r"predict.device 'cuda': this machine has no CUDA"),
                         (("evaluate", {"device": "cuda:1"}), r"evaluate.device 'cuda:1'"),
                         (("surrogate", {"scaling": {"use_gpu": True}}), r"training workers: .* needs 1 GPU"),
                         (("inversion", {**TINY["inversion"], "ray": {"cpus_per_actor": 8}}), r"inversion actors")):
        stage, settings = change
        with pytest.raises(ValueError, match=what):
            run_pipeline({**TINY, stage: {**TINY.get(stage, {}), **settings}}, str(tmp_path / stage),
                         progress=log.append)
    assert not any("network: running" in line for line in log), log
    # a stage the run stops before is not held against it
    assert run_pipeline({**TINY, "predict": {"device": "cuda"}}, str(tmp_path / "net"), progress=log.append,
                        stop_after="network") == {"network": "ran"}


def test_interrupted_run_resumes(ray_session, tmp_path):
    out = tmp_path / "run"
    log = []
    first = run_pipeline(TINY, str(out), progress=log.append, stop_after="dataset")
    assert first == {"network": "ran", "dataset": "ran"}
    assert not (out / "report.md").exists()

    second = run_pipeline(TINY, str(out), progress=log.append)
    assert second["network"] == "skipped" and second["dataset"] == "skipped"
    for name in ("surrogate-vgm", "sptf-vgm", "predict-vgm", "inversion", "evaluate"):
        assert second[name] == "ran", (name, second)
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert storage.verify_manifest(str(out / "train" / "sptf-vgm" / "bundle"))
    md = (out / "report.md").read_text()
    assert "SPTF-VGM" in md and "Truth ceiling" in md and "Inversion-VGM (historical)" in md
    assert "Permutation feature importance" in md and "Input-length sensitivity" in md
    resolved = load_config(PipelineConfig, str(out / RESOLVED_CONFIG))
    assert resolved.network.n_sites == 10
    state = json.loads((out / "stages.json").read_text())
    assert all(v["status"] == "done" for v in state.values())
    # each stage says what made it, so two runs that differ can be told apart by their hosts
    here = provenance()
    assert here["cpu"] and "versions" in here
    assert all(v["host"] == here for v in state.values()), state

    third = run_pipeline(TINY, str(out), progress=log.append)
    assert set(third.values()) == {"skipped"}

    _check_inputs_made_again_are_followed(out, log)


    # a changed upstream setting never reuses the old output silently
    changed = {**TINY, "dataset": {**TINY["dataset"], "seed": 5}}
    with pytest.raises(ValueError, match="other settings"):
        run_pipeline(changed, str(out), progress=log.append)
    # ... unless asked: the changed stage and the stages after it are made again
    old_shards = sorted(p.name for p in (out / "dataset").glob("*.parquet"))
    fourth = run_pipeline(changed, str(out), progress=log.append, stop_after="surrogate", replace_changed=True)
    assert fourth == {"network": "skipped", "dataset": "ran", "surrogate-vgm": "ran"}, fourth
    assert any("deleting" in line and "dataset" in line for line in log)
    assert sorted(p.name for p in (out / "dataset").glob("*.parquet")) == old_shards
    assert "seed: 5" in (out / "dataset" / "config.yaml").read_text()
    assert run_pipeline(changed, str(out), progress=log.append, stop_after="surrogate") == {
        "network": "skipped", "dataset": "skipped", "surrogate-vgm": "skipped"}
    assert STAGES[0] == "network"


def _check_inputs_made_again_are_followed(out, log):
    stages_json = out / "stages.json"
    state = json.loads(stages_json.read_text())
    assert state["predict-vgm"]["inputs"] == {"sptf-vgm": state["sptf-vgm"]["made"],
                                              "network": state["network"]["made"]}
    # a run directory from before the tokens still skips every stage, and gains them
    legacy = {k: {f: v for f, v in rec.items() if f not in ("inputs", "made")} for k, rec in state.items()}
    stages_json.write_text(json.dumps(legacy))
    assert set(run_pipeline(TINY, str(out), progress=log.append).values()) == {"skipped"}
    assert json.loads(stages_json.read_text()) == state

    # a dataset shard made again to the same content (its sidecar's seconds and host differ):
    # the surrogate made from the set is kept
    (out / "dataset" / "shard-00001.parquet").write_bytes(b"truncated")
    remade = run_pipeline(TINY, str(out), progress=log.append)
    assert remade["dataset"] == "ran" and {v for k, v in remade.items() if k != "dataset"} == {"skipped"}, remade

    # the network made again with the same result: nothing made from it is redone
    storage.remove(str(out / "network"))
    again = run_pipeline(TINY, str(out), progress=log.append)
    assert again["network"] == "ran" and {v for k, v in again.items() if k != "network"} == {"skipped"}, again

    # an SPTF retrained with another result (two workers split the batches otherwise, same settings
    # hash): its predictions and the report are made again from it, the rest is kept
    storage.remove(str(out / "train" / "sptf-vgm"))
    two_workers = {**TINY, "sptf": {**TINY["sptf"], "scaling": {"num_workers": 2, "cpus_per_worker": 0.5}}}
    retrained = run_pipeline(two_workers, str(out), progress=log.append)
    assert json.loads(stages_json.read_text())["sptf-vgm"]["made"] != state["sptf-vgm"]["made"]
    assert retrained == {"network": "skipped", "dataset": "skipped", "surrogate-vgm": "skipped", "sptf-vgm": "ran",
                         "predict-vgm": "ran", "inversion": "skipped", "evaluate": "ran"}, retrained
    assert any("sptf-vgm made again since" in line for line in log)
    from sptf_ray.training.bundle import load_bundle

    trained_on = load_bundle(str(out / "train" / "sptf-vgm" / "bundle")).provenance["trained_on"]
    assert [(w["rank"], w["world_size"]) for w in trained_on] == [(0, 2), (1, 2)]


def test_missing_site_data_is_refused_before_a_run_directory_is_made(tmp_path):
    (tmp_path / "stations").mkdir()
    with pytest.raises(FileNotFoundError, match=r"site dataset .*stations: missing .*sites.parquet"):
        run_pipeline({"sites": str(tmp_path / "stations")}, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_later_setting_at_its_neutral_value_keeps_old_stage_hashes():
    """A run directory made before lr_schedule and patience existed still verifies; choosing cosine
    or an early stop changes the hash."""
    import dataclasses

    from sptf_ray.config import config_to_dict
    from sptf_ray.pipeline import _EXECUTION_KEYS, SurrogateStage, _hash

    before = {k: v for k, v in config_to_dict(SurrogateStage()).items()
              if k not in _EXECUTION_KEYS and k not in ("lr_schedule", "lr_final_fraction", "patience")}
    assert _hash("surrogate", SurrogateStage()) == _hash("surrogate", before)
    cosine = dataclasses.replace(SurrogateStage(), lr_schedule="cosine")
    assert _hash("surrogate", cosine) != _hash("surrogate", before)
    assert _hash("surrogate", dataclasses.replace(SurrogateStage(), patience=5)) != _hash("surrogate", before)
    chatty = dataclasses.replace(SurrogateStage(), log_level="INFO")  # what the console shows is no result
    assert _hash("surrogate", chatty) == _hash("surrogate", SurrogateStage())


def test_the_predict_and_evaluate_device_does_not_change_their_stage_hashes():
    """A run made on CPU keeps its digests (device was hashed then) and a GPU re-run skips them."""
    import hashlib
    import json

    from sptf_ray.config import config_to_dict
    from sptf_ray.pipeline import EvaluateStage, PredictStage, _hash

    def made_before(*parts):  # the digest as it was computed when device counted
        canonical = json.dumps([config_to_dict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts],
                               sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    assert _hash("predict", PredictStage(), "h") == made_before("predict", PredictStage(), "h")
    assert _hash("predict", PredictStage(device="cuda"), "h") == _hash("predict", PredictStage(), "h")
    assert _hash("evaluate", EvaluateStage(device="cuda:1"), []) == made_before("evaluate", EvaluateStage(), [])
    assert _hash("evaluate", EvaluateStage(n_timeseries=2), []) != _hash("evaluate", EvaluateStage(), [])


def test_a_moved_run_directory_resumes(ray_session, tmp_path):
    """The site-forced surrogate set is hashed by what the site data holds, not where it lies."""
    forced = {**TINY, "dataset_site_forcing": True, "dataset": {**TINY["dataset"], "per_shard": 8}}
    first = run_pipeline(forced, str(tmp_path / "made"), progress=lambda _: None, stop_after="dataset")
    assert first == {"network": "ran", "dataset": "ran"}
    (tmp_path / "made").rename(tmp_path / "moved")
    again = run_pipeline(forced, str(tmp_path / "moved"), progress=lambda _: None, stop_after="dataset")
    assert again == {"network": "skipped", "dataset": "skipped"}, again


def test_edited_site_statics_remake_what_was_made_from_them(ray_session, tmp_path):
    """With `sites:`, a site table edited since (the SPTF's soil inputs) remakes the SPTF, its
    predictions and the inversion; the surrogate set and surrogate, made from the daily table alone,
    are kept. A run recorded before the site token was kept adopts it without redoing anything."""
    from sptf_ray.data.network import NetworkConfig, build_network

    net = tmp_path / "sites"
    build_network(NetworkConfig(n_sites=10, n_years=3, seed=1, sites_per_task=10), str(net), executor="local",
                  progress=lambda m: None)
    cfg = {**{k: v for k, v in TINY.items() if k != "network"}, "sites": str(net)}
    out, log = tmp_path / "run", []
    first = run_pipeline(cfg, str(out), progress=log.append, stop_after="predict")
    assert set(first.values()) == {"external", "ran"}, first
    stages_json = out / "stages.json"
    state = json.loads(stages_json.read_text())
    assert state["sptf-vgm"]["inputs"]["network"] == state["network"]["made"] is not None

    legacy = {k: {**rec, "inputs": {u: None if u == "network" else t for u, t in rec.get("inputs", {}).items()}}
              for k, rec in state.items() if k != "network"}
    stages_json.write_text(json.dumps(legacy))
    assert set(run_pipeline(cfg, str(out), progress=log.append, stop_after="predict").values()) == {
        "external", "skipped"}
    assert json.loads(stages_json.read_text())["sptf-vgm"]["inputs"] == state["sptf-vgm"]["inputs"]

    sites = storage.read_parquet(str(net / "sites.parquet"))
    sites["sand"], sites["clay"] = sites["clay"].to_numpy(), sites["sand"].to_numpy()
    storage.atomic_write_parquet(sites, str(net / "sites.parquet"))
    manifest = storage.read_manifest(str(net))
    storage.write_manifest(str(net), sorted(manifest["files"]), manifest.get("extra"))
    again = run_pipeline(cfg, str(out), progress=log.append, stop_after="predict")
    assert again == {"network": "external", "dataset": "skipped", "surrogate-vgm": "skipped",
                     "sptf-vgm": "ran", "predict-vgm": "ran"}, again
    assert any("sptf-vgm: network made again since" in line for line in log), log

    def edit_daily(factor):
        daily = storage.read_parquet(str(net / "daily.parquet"))
        daily["swc"] = daily["swc"] * factor
        storage.atomic_write_parquet(daily, str(net / "daily.parquet"))
        storage.write_manifest(str(net), sorted(manifest["files"]), manifest.get("extra"))

    # a re-ingested daily table under the same settings is out of date in the same way
    edit_daily(0.98)
    again = run_pipeline(cfg, str(out), progress=log.append, stop_after="predict")
    assert again == {"network": "external", "dataset": "skipped", "surrogate-vgm": "skipped",
                     "sptf-vgm": "ran", "predict-vgm": "ran"}, again
    assert any("sptf-vgm: the site data changed since" in line for line in log), log
    # ... but other data and other settings at once are still a conflict
    edit_daily(0.98)
    with pytest.raises(ValueError, match="other settings \\("):
        run_pipeline({**cfg, "sptf": {**cfg["sptf"], "lr": 2e-3}}, str(out), progress=log.append, stop_after="predict")
    # a stage recorded before the data-free settings hash cannot tell which one changed
    state = json.loads(stages_json.read_text())
    stages_json.write_text(json.dumps({k: {f: v for f, v in rec.items() if f != "settings"}
                                       for k, rec in state.items()}))
    with pytest.raises(ValueError, match="other settings or site data"):
        run_pipeline(cfg, str(out), progress=log.append, stop_after="predict")


def test_a_site_forced_surrogate_set_follows_the_daily_table_not_the_site_table(ray_session, tmp_path):
    """dataset_site_forcing draws the surrogate set's forcings from the `sites:` daily table: a
    re-ingested daily table remakes the set, an edited site table (soil inputs only) does not."""
    from sptf_ray.data.network import NetworkConfig, build_network

    net = tmp_path / "sites"
    build_network(NetworkConfig(n_sites=6, n_years=3, seed=2, sites_per_task=6), str(net), executor="local",
                  progress=lambda m: None)
    manifest = storage.read_manifest(str(net))
    cfg = {**{k: v for k, v in TINY.items() if k != "network"}, "sites": str(net), "dataset_site_forcing": True}
    out, log = tmp_path / "run", []

    def edit(table, column, factor):
        frame = storage.read_parquet(str(net / table))
        frame[column] = frame[column] * factor
        storage.atomic_write_parquet(frame, str(net / table))
        storage.write_manifest(str(net), sorted(manifest["files"]), manifest.get("extra"))
        return run_pipeline(cfg, str(out), progress=log.append, stop_after="dataset")

    assert run_pipeline(cfg, str(out), progress=log.append, stop_after="dataset") == {
        "network": "external", "dataset": "ran"}
    made = json.loads((out / "stages.json").read_text())["dataset"]
    assert edit("sites.parquet", "bulk_density", 0.95) == {"network": "external", "dataset": "skipped"}
    assert edit("daily.parquet", "precip_cm", 1.1) == {"network": "external", "dataset": "ran"}
    assert any("dataset: the site data changed since" in line for line in log), log
    assert json.loads((out / "stages.json").read_text())["dataset"]["made"] != made["made"]


def test_provenance_files_are_left_out_of_a_stage_output_token(tmp_path):
    from sptf_ray.pipeline import _output_token

    for name, content in (("shard-00000.parquet", b"rows"), ("shard-00000.json", b'{"seconds": 1.0}'),
                          ("provenance.json", b"{}")):
        (tmp_path / name).write_bytes(content)
    storage.write_manifest(str(tmp_path), ["shard-00000.parquet", "shard-00000.json", "provenance.json"])
    token = _output_token(str(tmp_path))
    (tmp_path / "shard-00000.json").write_bytes(b'{"seconds": 2.5}')
    (tmp_path / "provenance.json").write_bytes(b'{"node": "elsewhere"}')
    storage.write_manifest(str(tmp_path), ["shard-00000.parquet", "shard-00000.json", "provenance.json"])
    assert _output_token(str(tmp_path)) == token
    (tmp_path / "shard-00000.parquet").write_bytes(b"other rows")
    storage.write_manifest(str(tmp_path), ["shard-00000.parquet", "shard-00000.json", "provenance.json"])
    assert _output_token(str(tmp_path)) != token


def test_a_run_made_when_the_site_path_was_hashed_keeps_its_digest():
    from sptf_ray.dataset.build import DatasetConfig
    from sptf_ray.pipeline import _dataset_hash, _hash

    here, there = DatasetConfig(sites="/runs/a/network"), DatasetConfig(sites="/runs/b/network")
    site_data = _hash("network", {"n_sites": 3})
    assert _dataset_hash(here, site_data, None) == _dataset_hash(there, site_data, None)
    assert _dataset_hash(here, site_data, None) != _dataset_hash(here, _hash("network", {"n_sites": 4}), None)
    legacy = _hash("dataset", here, site_data)
    assert _dataset_hash(here, site_data, legacy) == legacy
    # without site forcing a hand-set path has no content hash standing in for it: it stays hashed
    assert _dataset_hash(here, None, None) != _dataset_hash(there, None, None)


def test_models_run_at_the_same_time_and_one_failing_lets_the_other_finish():
    import threading

    from sptf_ray.pipeline import _for_each_model

    both_inside = threading.Barrier(2, timeout=20)  # passes only when the two stages overlap
    finished = []

    def stage(model):
        both_inside.wait()
        if model == "fxw":
            raise RuntimeError("fxw broke")
        finished.append(model)

    with pytest.raises(RuntimeError, match="fxw broke"):
        _for_each_model(["vgm", "fxw"], stage, parallel=True)
    assert finished == ["vgm"]
    order = []
    _for_each_model(["vgm", "fxw"], order.append, parallel=False)
    assert order == ["vgm", "fxw"]


def test_two_models_train_side_by_side(ray_session, tmp_path):
    both = {**TINY, "models": ["vgm", "fxw"], "dataset": {**TINY["dataset"], "model": "both", "per_shard": 48}}
    log = []
    actions = run_pipeline(both, str(tmp_path / "run"), progress=log.append, stop_after="surrogate")
    assert actions == {"network": "ran", "dataset": "ran", "surrogate-vgm": "ran", "surrogate-fxw": "ran"}, actions
    state = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert all(state[f"surrogate-{m}"]["status"] == "done" for m in ("vgm", "fxw"))
    for m in ("vgm", "fxw"):
        assert storage.verify_manifest(str(tmp_path / "run" / "train" / f"surrogate-{m}" / "bundle"))


def test_the_pipeline_job_takes_the_flags_of_sptf_run(ray_session, tmp_path, capsys):
    """Re-submitting a run whose settings were edited needs --replace-changed, as `sptf run` does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("job_run_pipeline", CONFIGS.parent / "jobs" / "run_pipeline.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    out = str(tmp_path / "run")
    first, edited = tmp_path / "first.yaml", tmp_path / "edited.yaml"
    first.write_text(json.dumps(TINY))
    edited.write_text(json.dumps({**TINY, "network": {**TINY["network"], "seed": 2}}))
    assert job.main([str(first), "--out", out, "--stop-after", "network"]) == 0
    assert job.main([str(edited), "--out", out, "--stop-after", "network"]) == 2
    assert "--replace-changed" in capsys.readouterr().err
    assert job.main([str(edited), "--out", out, "--stop-after", "network", "--replace-changed"]) == 0
    assert "[run] network: ran" in capsys.readouterr().out


def test_models_share_a_gpu_one_after_the_other(ray_session, monkeypatch):
    """Two GPU trainings side by side on an instance with GPUs for one: the second would retry
    its worker group every minute until the first ended, so they take turns instead."""
    from types import SimpleNamespace

    from sptf_ray import jobs_common
    from sptf_ray.pipeline import _Run
    from sptf_ray.training.ray_train import ScalingArgs

    if ray_session.cluster_resources().get("GPU"):
        pytest.skip("this Ray instance has a GPU")
    log = []
    run = SimpleNamespace(cfg=load_config(PipelineConfig, {**TINY, "models": ["vgm", "fxw"],
                                                           "dataset": {**TINY["dataset"], "model": "both"}}),
                          progress=log.append)
    assert run.cfg.parallel_models
    assert _Run._side_by_side(run, "surrogates", ScalingArgs()) is True  # CPU workers queue quietly
    assert _Run._side_by_side(run, "surrogates", ScalingArgs(use_gpu=True)) is False
    assert log == ["[run] surrogates: one after the other (2 GPU for the models side by side, this instance has 0)"]
    monkeypatch.setattr(jobs_common, "ray_started_in_this_process", lambda: False)  # a cluster that may grow
    assert _Run._side_by_side(run, "surrogates", ScalingArgs(use_gpu=True)) is True
