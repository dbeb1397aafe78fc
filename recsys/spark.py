"""The one Spark session of a process: what every Spark batch job (features.spark_jobs) and Feast's Spark offline
store share.

`spark_session(master)` starts it (or returns the active one): `local[2]` on this machine, a cluster URL
(`spark://host:7077`, `yarn`, `k8s://...`) in production. The settings are the ones the jobs' results depend on:
UTC session time zone (timestamps round-trip unchanged), Arrow transfers (pandas UDFs), and workers that run this
environment's interpreter with one BLAS/OpenMP thread each (a local[N] master already runs N of them).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

WORKER_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
DEFAULT_CONF = {"spark.driver.memory": "4g", "spark.driver.maxResultSize": "3g"}
"""Spark's 1g driver heap runs out collecting the demo world's interest tables (the job then hangs: the thread
that receives task results dies); `spark_conf` in the run config overrides these and adds any other setting."""


def spark_session(master: str = "local[2]", shuffle_partitions: int | None = None,
                  conf: dict[str, str] | None = None) -> SparkSession:
    """The active session if there is one (its master and settings win), else a new one on `master` with
    DEFAULT_CONF updated by `conf`."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = (SparkSession.builder.master(master).appName("sail-recsys")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.shuffle.partitions", str(shuffle_partitions or _default_partitions(master)))
               .config("spark.driver.bindAddress", os.environ["SPARK_LOCAL_IP"]))
    for key, value in WORKER_THREADS.items():
        builder = builder.config(f"spark.executorEnv.{key}", value)
    for key, value in {**DEFAULT_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _default_partitions(master: str) -> int:
    """local[N] -> 2N (shuffles of a few tasks per core); a cluster -> Spark's own default (200)."""
    if master.startswith("local"):
        inside = master[master.find("[") + 1:master.find("]")] if "[" in master else "1"
        cores = (os.cpu_count() or 1) if inside == "*" else int(inside)
        return 2 * cores
    return 200
