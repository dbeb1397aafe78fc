"""The `recsys` command line: one sub-command per stage, plus `run` for the whole main job.

Every command takes --config (YAML, see configs/demo.yaml) and repeatable --set key.sub=value overrides.
Bad input or config exits with status 2 and a message naming the file, column or key.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

for _k, _v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
               "SPARK_LOCAL_IP": "127.0.0.1", "MASTER_ADDR": "127.0.0.1", "TOKENIZERS_PARALLELISM": "false",
               "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}.items():
    os.environ.setdefault(_k, _v)

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Prepare and inspect canonical datasets.", no_args_is_help=True)
features_app = typer.Typer(help="Feast feature repository: apply definitions, materialize, serve.",
                           no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
# piped or logged output (CI, `make demo | tee`) gets room for the results table; terminals keep their width
console = Console(width=200) if not sys.stdout.isatty() and "COLUMNS" not in os.environ else Console()

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML run config (defaults to the built-in demo settings).")
SetOpt = typer.Option(None, "--set", "-s", help="Override a config key, e.g. --set embedding.train.batch_size=32.")
RunDirOpt = typer.Option(Path("runs/demo"), "--run-dir", "-r", help="Directory for every output of the run.")


def _friendly_errors(fn: Callable) -> Callable:
    """Turn user errors (config, data, arguments, file system) into one message and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from recsys.checkpoint import CheckpointMismatch
        from recsys.errors import ConfigError, DataError

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        for pkg in ("recsys", "embedding", "features", "ranking"):
            logging.getLogger(pkg).setLevel(logging.INFO)
        try:
            return fn(*args, **kwargs)
        except (ConfigError, DataError, CheckpointMismatch) as e:
            _fail(str(e))
        except (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError) as e:
            _fail(f"{e.strerror or type(e).__name__}: {e.filename or e}")

    return wrapper


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _parse_ids(text: str, option: str) -> list[int]:
    """'1, 2,3' -> [1, 2, 3]; anything else names the option and the offending value."""
    from recsys.errors import ConfigError

    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"{option}: expected comma-separated integer ids, got {text!r}")
    bad = [p for p in parts if not p.lstrip("-").isdigit() or int(p) < 0]
    if bad:
        raise ConfigError(f"{option}: {bad[0]!r} is not a non-negative integer id")
    return [int(p) for p in parts]


def _load(config: Path | None, overrides: list[str] | None):
    from recsys.config import RunConfig
    from recsys.config_io import load_model

    return load_model(RunConfig, config, overrides or [])


def _print_mapping(title: str, mapping: dict) -> None:
    table = Table(title=title, show_header=False)
    for k, v in mapping.items():
        table.add_row(str(k), str(v))
    console.print(table)


@data_app.command("prepare")
@_friendly_errors
def data_prepare(config: Path | None = ConfigOpt, overrides: list[str] | None = SetOpt,
                 source: str | None = typer.Option(None, help="synthetic | movielens | parquet"),
                 path: Path | None = typer.Option(None, help="Input folder (MovieLens or canonical parquet)."),
                 posters: Path | None = typer.Option(None, help="MovieLens posters folder (<movieId>.jpg)."),
                 out: Path = typer.Option(Path("runs/data"), "--out", "-o", help="Prepared dataset directory."),
                 force: bool = typer.Option(False, help="Re-prepare even if --out holds a dataset.")):
    """Turn raw data into the canonical dataset format (manifest + parquet tables) and print a summary."""
    from recsys.data.prepare import prepare_dataset

    extra = [f"data.{k}={v}" for k, v in {"source": source, "path": path, "posters": posters}.items() if v]
    cfg = _load(config, (overrides or []) + extra)
    ds = prepare_dataset(cfg.data, out, world=cfg.world, reuse=not force)
    _print_mapping(f"dataset {out}", ds.summary())


@data_app.command("summary")
@_friendly_errors
def data_summary(path: Path = typer.Argument(..., help="A prepared dataset directory.")):
    """Print what a prepared dataset holds."""
    from recsys.data.dataset import load_dataset

    _print_mapping(f"dataset {path}", load_dataset(path).summary())


@features_app.command("apply")
@_friendly_errors
def features_apply(run_dir: Path = RunDirOpt):
    """Register the run's Feast definitions (entities, feature views, on-demand match features, services)."""
    from features.materialize import apply_repo

    repo = apply_repo(run_dir)
    console.print(f"applied feature repository {repo.run_dir / 'feature_repo'}")


@features_app.command("materialize")
@_friendly_errors
def features_materialize(run_dir: Path = RunDirOpt,
                         end: str | None = typer.Option(None, help="Materialize up to this UTC time "
                                                           "(default: the end of the run's snapshots).")):
    """Incrementally load feature values into the online store (idempotent: a second run writes nothing new)."""
    import json

    import pandas as pd

    from features.materialize import materialize_repo

    if end is None:
        marker = run_dir / "stages" / "features.json"
        if not marker.is_file():
            raise typer.BadParameter(f"no finished features stage in {run_dir}; pass --end")
        end = json.loads(marker.read_text())["snapshot_end"]
    try:
        end_ts = pd.Timestamp(end)
    except ValueError:
        from recsys.errors import ConfigError

        raise ConfigError(f"--end {end!r}: not a timestamp (e.g. 2026-03-02 or 2026-03-02T12:00:00Z)") from None
    stats = materialize_repo(run_dir, end_ts)
    _print_mapping("materialize", {"rows": stats["total_rows"], "seconds": f"{stats['seconds']:.1f}",
                                   "rows/s": f"{stats['rows_per_s']:.0f}", **stats["rows"]})


@features_app.command("serve")
@_friendly_errors
def features_serve(user: int | None = typer.Option(None, help="user_id"),
                   candidates: str | None = typer.Option(None, help="Comma-separated candidate item ids."),
                   run_dir: Path = RunDirOpt,
                   service: str | None = typer.Option(
                       None, help="Feast FeatureService name (default: the service with every ranking feature)."),
                   requests: Path | None = typer.Option(
                       None, help="JSON lines, one request each ({\"user_id\": 7, \"candidates\": [12, 40]}, "
                       "optional \"service\"); '-' = standard input. Prints one JSON line of rows per request.")):
    """Print the ranking-ready frame for one user and candidates from the online store (unknown ids get
    documented defaults and unknown_user/unknown_item flags), or answer a stream of requests in one process.

    Examples: recsys features serve -r runs/demo --user 12 --candidates 5,17,99;
    recsys features serve -r runs/demo --requests requests.jsonl > rows.jsonl"""
    from features.definitions import FULL_SERVICE
    from features.repo import FeatureRepo

    if requests is not None:
        _serve_requests(FeatureRepo(run_dir), requests, service or FULL_SERVICE)
        return
    if user is None or candidates is None:
        _fail("pass --user and --candidates, or --requests FILE")
    ids = _parse_ids(candidates, "--candidates")  # a malformed request is refused before the store is opened
    frame = FeatureRepo(run_dir).online(user, ids, service or FULL_SERVICE)
    view = frame.set_index("item_id").drop(columns="user_id").T
    console.print(f"user {user}: one column per candidate item")
    console.print(view.to_string(), highlight=False)


def _serve_requests(repo, source: Path, default_service: str) -> None:
    """One JSON line out per JSON line in (columns + rows, NaN as null); a malformed line stops with its number."""
    import json

    from features.serving import json_rows
    from recsys.errors import DataError

    stream = sys.stdin if str(source) == "-" else source.open()
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                frame = repo.online(req["user_id"], req["candidates"], req.get("service", default_service))
            except (ValueError, KeyError, TypeError, DataError) as e:
                raise DataError(f"request line {number}: {e}", file=str(source)) from None
            print(json.dumps(json_rows(frame)), flush=True)


@features_app.command("http")
@_friendly_errors
def features_http(run_dir: Path = RunDirOpt,
                  host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback unless you choose "
                                           "another)."),
                  port: int = typer.Option(6566, help="TCP port.")):
    """Serve ranking-ready feature rows over HTTP until interrupted: POST /rank-features
    {"user_id": 7, "candidates": [12, 40]} (see features.server).

    Example: recsys features http -r runs/demo --port 6566"""
    from features.server import serve

    serve(run_dir, host=host, port=port)


@app.command("teachers")
@_friendly_errors
def teachers(dataset: Path = typer.Option(..., help="A prepared dataset directory."),
             out: Path = typer.Option(..., "--out", "-o", help="Output directory: <out>/id, <out>/sequence, "
                                      "<out>/teachers_report.json."),
             config: Path | None = ConfigOpt, overrides: list[str] | None = SetOpt,
             teacher: str = typer.Option("both", help="id | sequence | both"),
             nproc: int = typer.Option(1, "--nproc", min=1, help="Processes on this machine; the tables are sharded "
                                       "over them (>1: the project launcher, see embedding.teachers.launch)."),
             master_addr: str = typer.Option("127.0.0.1", help="With --nproc > 1: the address the rendezvous "
                                             "store listens on (loopback unless you choose another)."),
             master_port: int = typer.Option(0, help="With --nproc > 1: the store's port (0 = a free one).")):
    """Train the TorchRec teachers (the config's `teachers` section) on a prepared dataset, in one process or
    `--nproc N` (rendezvous on 127.0.0.1). Under torchrun (its store listens on every interface) every rank runs
    this command. Rank 0 writes the exports and prints the metrics."""
    from embedding.teachers import TEACHER_KINDS, TeacherConfig, train_teachers
    from recsys.data.dataset import load_dataset

    if teacher not in (*TEACHER_KINDS, "both"):
        raise typer.BadParameter(f"--teacher {teacher!r}: expected one of {[*TEACHER_KINDS, 'both']}")
    section = _load(config, overrides).teachers
    if nproc > 1:
        from embedding.teachers.launch import WorkerFailed, launch

        worker = [sys.executable, "-m", "recsys.cli", "teachers", "--dataset", str(dataset), "--out", str(out),
                  "--teacher", teacher, *(["--config", str(config)] if config else []),
                  *[a for s in overrides or [] for a in ("--set", s)]]
        try:
            launch(worker, nproc, master_addr, master_port)
        except WorkerFailed as e:
            console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_status) from None
        return
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:  # one log per job, not one per process
        logging.getLogger("embedding").setLevel(logging.WARNING)
    results = train_teachers(load_dataset(dataset), TeacherConfig(**section.model_dump(exclude={"enabled"})), out,
                             TEACHER_KINDS if teacher == "both" else (teacher,))
    if rank == 0:
        for kind, res in results.items():
            _print_mapping(f"{kind} teacher {res.model_version}", {k: f"{v:.4f}" for k, v in res.metrics.items()})


@app.command("ablate")
@_friendly_errors
def ablate(run_dir: Path = RunDirOpt,
           what: str = typer.Option(..., "--what", help="Comma-separated components, e.g. cre.seq2item,"
                                    "modality.image,dataset.q2i,features.sid (recsys.ablation.COMPONENTS).")):
    """Switch one component off at a time in a finished run: rerun from the earliest stage it affects (in
    <run-dir>/ablations/<component>) and compare with the full run on the same test examples.

    Example: recsys ablate -r runs/demo --what cre.content_anchor,features.sid"""
    from ranking.report import interval
    from recsys.ablation import run_ablations

    names = [w.strip() for w in what.split(",") if w.strip()]
    table = run_ablations(run_dir, names, on_stage=lambda s, status: console.print(
        f"[bold cyan]{s:>10}[/bold cyan] {status}"))
    out = Table(title="Ablations: test AUC, ablated - full (95% paired bootstrap over users)")
    for col in ("component", "variant", "ΔAUC", "lift vs strongest baseline, full", "ablated"):
        out.add_column(col)
    for r in table.to_dict(orient="records"):
        full = {k.removesuffix("_full"): v for k, v in r.items() if k.endswith("_full")}
        abl = {k.removesuffix("_ablated"): v for k, v in r.items() if k.endswith("_ablated")}
        out.add_row(r["component"], r["variant"], interval(r, "auc_change", True),
                    interval(full, "auc_diff_vs_baseline", True), interval(abl, "auc_diff_vs_baseline", True))
    console.print(out)
    console.print(f"table: {run_dir / 'ablation.md'} (and at the end of {run_dir / 'results.md'})")


@app.command("run")
@_friendly_errors
def run(config: Path | None = ConfigOpt, overrides: list[str] | None = SetOpt, run_dir: Path = RunDirOpt,
        stages: list[str] | None = typer.Option(None, "--stage", help="Run only up to these stages (data, "
                                                   "encode, embedding, teachers, cre, features, ranking, "
                                                   "simulation)."),
        force: list[str] | None = typer.Option(None, "--force", help="Rerun a finished stage from scratch "
                                                  "(its training checkpoint is discarded; repeatable).")):
    """The main job: prepare data, encode items, train the omni-modal embedding, mine interests, build and
    materialize Feast features, compare rankers (AUC/GAUC in MLflow) and simulate lifetime (LT7/LT14).

    Finished stages are skipped on a rerun (see <run-dir>/stages/); --force STAGE reruns one."""
    import time

    import pandas as pd

    from ranking.report import interval
    from recsys.errors import ConfigError
    from recsys.pipeline import run_pipeline

    cfg = _load(config, overrides)
    t0 = time.perf_counter()

    def on_stage(stage: str, status: str) -> None:
        console.print(f"[bold cyan]{stage:>10}[/bold cyan] {status}")

    if cfg.data.split.folds > 1 and cfg.data.split.fold is None:  # rolling origin: every fold, then pooled
        from recsys.rolling import run_rolling

        if stages:
            raise ConfigError("--stage applies to one run; with data.split.folds > 1 every fold runs whole")
        rolled = run_rolling(cfg, run_dir, force=set(force or ()), on_stage=on_stage)
        out = Table(title=f"Pooled over {len(rolled.folds)} rolling-origin folds (95% bootstrap over users within "
                          "folds)")
        for col in ("variant", "AUC", "ΔAUC vs each fold's strongest baseline", "ΔAUC vs its ranker's baseline",
                    "ΔAUC vs content-only"):
            out.add_column(col, justify="left" if col == "variant" else "right")
        for row in rolled.pooled.to_dict(orient="records"):
            out.add_row(row["variant"], interval(row, "auc"), interval(row, "auc_diff_vs_baseline", True),
                        interval(row, "auc_diff_vs_ranker", True), interval(row, "auc_diff_vs_ref", True))
        console.print(out)
        console.print(f"total {time.perf_counter() - t0:.0f}s; results: {run_dir / 'results.md'}")
        return
    result = run_pipeline(cfg, run_dir, stages=stages, force=set(force or ()), on_stage=on_stage)
    if "data" in result.outputs:
        _print_mapping("dataset", result.outputs["data"]["summary"])
    negatives = result.outputs.get("ranking", {}).get("negatives")
    if negatives:
        counts = ", ".join(f"{p}: {negatives[p]['negatives']} for {negatives[p]['positives']} positives"
                           f" ({negatives[p]['unfilled']} unfilled)" for p in ("valid", "test") if p in negatives)
        console.print(f"implicit feedback: negatives sampled ({negatives['strategy']}, k={negatives['k']}): {counts}")
    if "ranking" in result.outputs:
        table = result.table()
        out = Table(title="Ranker variants on the test period (95% bootstrap CIs over users)")
        out.add_column("variant")
        strongest = result.outputs["ranking"].get("baseline", "baseline")
        for col in ("validation AUC", "AUC", f"ΔAUC vs {strongest} (strongest)", "ΔAUC vs own ranker's baseline",
                    "ΔAUC vs content-only", "AUC cold items", "LT7", f"ΔLT7 vs {strongest}", "LT14"):
            out.add_column(col, justify="right")

        def fmt(row, key):
            if key not in row or pd.isna(row[key]):
                return "-"
            lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
            return f"{row[key]:.4f} [{lo:.4f}, {hi:.4f}]" if lo is not None and not pd.isna(lo) else f"{row[key]:.4f}"

        for _, row in table.iterrows():
            out.add_row(row["variant"], fmt(row, "validation_auc"), fmt(row, "auc"), fmt(row, "auc_diff_vs_baseline"),
                        fmt(row, "auc_diff_vs_ranker"), fmt(row, "auc_diff_vs_ref"), fmt(row, "auc_cold"),
                        fmt(row, "lt7"), fmt(row, "lt7_diff"), fmt(row, "lt14"))
        console.print(out)
    console.print(f"total {time.perf_counter() - t0:.0f}s; results: {run_dir / 'results.md'}; MLflow runs: "
                  f"make ui RUN_DIR={run_dir}  (or mlflow ui --backend-store-uri {result.mlflow_uri})")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
