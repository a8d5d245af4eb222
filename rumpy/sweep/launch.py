"""Launching a sweep's workers: in this process, as local processes (--workers N), or as
cluster jobs through submitit (Slurm; submitit's local executor for trying it out). Every
worker runs the same loop over the shared sweep folder (run.py)."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .run import run_cells, submitit_worker

log = logging.getLogger(__name__)


@dataclass
class ClusterOptions:
    partition: str = ""
    time_min: int = 240
    gpus_per_job: int = 0
    cpus_per_job: int = 2
    mem_gb: int = 16
    wait: bool = False


def run_local(folder: Path, workers: int) -> int:
    if workers == 1:
        return run_cells(folder)
    env = dict(os.environ)
    threads = max(1, (os.cpu_count() or 1) // workers)  # workers share the cores, not fight
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    procs = [subprocess.Popen([sys.executable, "-m", "rumpy.sweep.run", str(folder)], env=env)
             for _ in range(workers)]

    def forward(signum, frame) -> None:  # `kill` of this process: every worker saves and stops
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    codes = []
    try:
        for proc in procs:
            while True:
                try:
                    codes.append(proc.wait())
                    break
                except KeyboardInterrupt:  # the workers got the Ctrl+C too: let them save
                    continue
    finally:
        signal.signal(signal.SIGTERM, previous)
    return max(codes, key=lambda c: (c != 0, abs(c)))


def launcher_problem(launcher: str) -> str | None:
    """Why this launcher cannot start here (checked before the sweep writes anything)."""
    if launcher == "local":
        return None
    try:
        import submitit  # noqa: F401
    except ImportError:
        return (f"--launcher {launcher} needs submitit: pip install -c constraints.txt "
                f"'.[cluster]'")
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if launcher == "slurm" and missing:
        return (f"--launcher slurm: no Slurm here ({' and '.join(missing)} not found); run on a "
                f"Slurm login node, or use --launcher local or submitit-local")
    return None


def run_submitit(folder: Path, workers: int, cluster: str, options: ClusterOptions) -> int:
    import submitit

    executor = submitit.AutoExecutor(folder=folder / ".submitit", cluster=cluster)
    params = {"timeout_min": options.time_min, "name": f"rumpy-sweep-{folder.name}",
              "cpus_per_task": options.cpus_per_job, "mem_gb": options.mem_gb}
    if options.gpus_per_job:
        params["gpus_per_node"] = options.gpus_per_job
    if cluster == "slurm" and options.partition:
        params["slurm_partition"] = options.partition
    executor.update_parameters(**params)
    jobs = [executor.submit(submitit_worker, str(folder)) for _ in range(workers)]
    log.info("submitted %d %s job(s): %s (logs in %s)", len(jobs), cluster,
             ", ".join(str(j.job_id) for j in jobs), folder / ".submitit")
    if cluster == "slurm" and not options.wait:
        log.info("the jobs run on their own; `rumpy sweep ... --status` shows the cells, and "
                 "`rumpy table %s` makes the table", folder)
        return 0
    codes = [job.result() for job in jobs]
    return max(codes, key=lambda c: (c != 0, abs(c)))
