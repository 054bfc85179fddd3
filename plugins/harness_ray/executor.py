"""The Ray executor's driver side: connect, submit training and cell tasks, yield outcomes."""

from __future__ import annotations

import logging
import os
from collections import deque

from harness.api import Group, Plan
from harness.errors import HarnessError, one_line
from harness.kit.threads import MATH_ENV, set_math_environment, threads_from_env
from harness_ray import tasks


def run(plan: Plan, options: dict):
    if plan.worker.cache is None:
        raise HarnessError("--executor ray: needs the model cache, which Ray tasks load trained models from; "
                           "drop --no-cache (or unset HARNESS_NO_CACHE)")
    import ray

    started = _connect(ray, options)
    try:
        yield from _dispatch(ray, plan, options)
    finally:
        if started:
            ray.shutdown()


def _connect(ray, options: dict) -> bool:
    """Join the cluster at ``address``, or start a local instance; True when this run started one."""
    if ray.is_initialized():  # the caller's own session: use it, and leave it running
        return False
    # the driver's math settings (harness.kit.threads), so a cluster's workers compute as this process would
    set_math_environment()
    settings = dict(logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False,
                    runtime_env={"env_vars": {name: os.environ[name] for name in MATH_ENV}})
    address = options["address"] or None
    try:
        if address:
            ray.init(address=address, **settings)
        else:
            ray.init(num_cpus=options["cpus"] or None, **settings)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"--executor-option address={address}" if address else "--executor ray"
        raise HarnessError(f"{where}: cannot start or reach Ray ({one_line(exc)}); for a cluster, run "
                           f"`ray start --head` there and pass its address") from None
    return True


def _dispatch(ray, plan: Plan, options: dict):
    """Keep at most ``limit`` tasks in flight; cells of trained models go before new trainings, so rows
    arrive early. After Ctrl-C nothing new is submitted and the tasks in flight are waited for."""
    cuda = plan.worker.device.type == "cuda"
    worker = plan.worker.for_device("cuda") if cuda else plan.worker  # Ray picks the GPU of each task
    resources = {"num_cpus": options["num_cpus"], "num_gpus": options["num_gpus"] if cuda else 0}
    train = ray.remote(tasks.train).options(**resources)
    cell_task = ray.remote(tasks.run_cell).options(**resources)
    shipped = ray.put(worker)
    threads = (options["threads"] or threads_from_env(), options["num_cpus"])  # explicit, cores
    limit = options["max_in_flight"] or _capacity(ray, resources)
    groups, ready, pending = deque(plan.groups), deque(), {}
    try:
        while True:
            while len(pending) < limit and (ready or groups) and not plan.stopping():
                if ready:
                    job, model_hash = ready.popleft()
                    pending[cell_task.remote(shipped, job, model_hash, threads)] = job
                else:
                    group = groups.popleft()
                    pending[train.remote(shipped, group, threads)] = group
            if not pending:
                return
            [ref], _ = ray.wait(list(pending), num_returns=1)
            what = pending.pop(ref)
            if isinstance(what, Group):
                yield from _trained(ray, ref, what, plan, worker, ready)
            else:
                outcome, crash = _result(ray, ref)
                yield outcome if crash is None else worker.failed(what, crash)
    finally:
        for ref in pending:  # closed early (a second Ctrl-C, an error): stop what still runs
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - a task that already ended cannot be cancelled
                pass


def _trained(ray, ref, group: Group, plan: Plan, worker, ready: deque):
    """After a training task: queue the group's cells, or fail them with its error."""
    trained, crash = _result(ray, ref)
    error = crash or trained.error
    if not error:
        plan.log(trained.message)
        ready.extend((job, trained.model_hash) for job in group.cells)
        return
    plan.log(f"[red]model {group.model} on {group.dataset} (seed {group.seed}) failed: {error}[/red]")
    for job in group.cells:
        yield worker.failed(job, error)


def _result(ray, ref):
    """(the task's return value, None), or (None, why) for a task that crashed, died or was cancelled."""
    try:
        return ray.get(ref), None
    except Exception as exc:  # noqa: BLE001 - whatever killed the task costs its cells, not the run
        return None, f"Ray task failed: {one_line(exc)}"


def _capacity(ray, resources: dict) -> int:
    """How many tasks of this size the cluster can run at once."""
    available = ray.cluster_resources()
    count = int(available.get("CPU", 1) // resources["num_cpus"])
    if resources["num_gpus"]:
        count = min(count, int(available.get("GPU", 0) // resources["num_gpus"]))
    return max(1, count)
