"""Run by tests/test_dataset.py in a subprocess: a 3-node Ray cluster (head with no CPUs + two
1-CPU nodes) builds a dataset while a shard task's worker process is SIGKILLed and then a node
is removed. Prints one JSON line with what happened; the test checks the output directory.

    python tests/dataset_cluster_scenario.py OUT_DIR REFERENCE_DIR
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

TASK_MARKERS = ("sptf_build_shard", "_shard_task")


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _descends_from(pid: int, root: int) -> bool:
    for _ in range(20):
        if pid == root:
            return True
        if pid <= 1:
            return False
        pid = _ppid(pid)
    return False


def running_shard_workers() -> list[int]:
    """Worker processes of this cluster executing a shard task (Ray titles them ray::<task>)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            if cmd.startswith("ray::") and any(m in cmd for m in TASK_MARKERS) and _descends_from(int(entry), me):
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def main(out: str, reference: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from sptf_ray.dataset.build import build_dataset

    config = dict(shards=8, per_shard=12, days=365, model="both", seed=7, max_retries=4)
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=0, object_store_memory=80 * 1024**2, include_dashboard=False))
    nodes = [cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    report: dict = {"killed_pids": [], "removed_node": False}
    box: dict = {}

    def run():
        try:
            box["result"] = build_dataset(config, out, executor="ray", progress=True)
        except BaseException as exc:  # reported to the test
            box["error"] = repr(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 120
    while thread.is_alive() and not report["killed_pids"] and time.time() < deadline:
        pids = running_shard_workers()
        if pids:
            time.sleep(0.2)  # let it get into the solver
            os.kill(pids[0], signal.SIGKILL)
            report["killed_pids"].append(pids[0])
        time.sleep(0.05)
    # Then take a whole node away while shards are still being built.
    while thread.is_alive() and time.time() < deadline:
        if len([n for n in os.listdir(out) if n.endswith(".json") and n.startswith("shard-")]) >= 2:
            cluster.remove_node(nodes[1])
            report["removed_node"] = True
            report["shards_done_at_removal"] = sum(n.endswith(".json") and n.startswith("shard-")
                                                   for n in os.listdir(out))
            break
        time.sleep(0.05)
    thread.join(timeout=180)
    if "result" in box:
        r = box["result"]
        report.update(actions=r.actions, simulated=r.simulated, failed=len(r.failed))
    report["error"] = box.get("error")
    ray.shutdown()
    cluster.shutdown()
    # The same config in one process, for the byte-identity check.
    build_dataset(config, reference, executor="local", progress=False)
    print("SCENARIO " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
