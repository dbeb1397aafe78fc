"""Train the teachers: `python -m recsys.teachers --dataset DIR --out DIR --teacher id|sequence|both`.

Also the torchrun entry point: `torchrun --nproc_per_node 2 -m recsys.teachers ...` trains the same models with
tables sharded table-wise over the ranks (gloo on CPU, nccl on CUDA). Rank 0 writes `<out>/id`, `<out>/sequence`
and `<out>/teachers_report.json` (all metrics). Overrides: `--set two_tower.epochs=5 --set sasrec.max_len=20`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from recsys.config_io import ConfigError, load_model
from recsys.data.dataset import load_dataset
from recsys.data.errors import DataError
from recsys.teachers import export as ex
from recsys.teachers.config import TeacherConfig
from recsys.teachers.train import distributed, train_id_teacher, train_sequence_teacher

REPORT = "teachers_report.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recsys.teachers", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="prepared canonical dataset directory")
    p.add_argument("--out", required=True, help="output directory (teachers write <out>/id, <out>/sequence)")
    p.add_argument("--teacher", choices=["id", "sequence", "both"], default="both")
    p.add_argument("--config", default=None, help="YAML file with TeacherConfig keys (optional)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. sasrec.epochs=5 (repeatable)")
    args = p.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("torchrec", "root", "fbgemm_gpu"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        cfg = load_model(TeacherConfig, args.config, args.overrides)
        ds = load_dataset(args.dataset)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    report: dict = {}
    with distributed(cfg.device) as env:      # one group for both teachers
        id_result = None
        if args.teacher in ("id", "both"):
            id_result = train_id_teacher(ds, cfg, out)
            report["id"] = id_result.metrics | {"model_version": id_result.model_version}
        if args.teacher in ("sequence", "both"):
            seq = train_sequence_teacher(ds, cfg, out, id_teacher=id_result)
            report["sequence"] = seq.metrics | {"model_version": seq.model_version}
        if env.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            ex.write_json(report | {"world_size": env.world_size}, out / REPORT)
            print(json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
