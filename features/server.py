"""A long-lived HTTP endpoint for ranking services: one user's candidates -> the ranking-ready feature rows.

`recsys features http --run-dir R` serves the run's online store. Feast's import, the registry objects and the
online readers are paid once per process (FeatureRepo.reader), not per request. The handlers are coroutines: one
process answers one request at a time on its event loop (a request is a few milliseconds of CPU); run more
processes behind a balancer to use more cores.

    POST /rank-features  {"user_id": 7, "candidates": [12, 40, 3], "service": "ranking_match_sid_v1"}
      -> {"service": ..., "columns": [...], "rows": [[...], ...]}   one row per candidate, in request order;
         missing values (NaN) are null. 422 with {"detail": message} for a malformed request (features.serving).
    GET  /health -> {"status": "ok", "services": [...], "project": ...}
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from features.definitions import FULL_SERVICE, SERVICES
from features.repo import FeatureRepo
from features.serving import json_rows
from recsys.errors import DataError


class RankRequest(BaseModel):
    user_id: int | str = Field(description="the user's id (an int64, or its decimal string)")
    candidates: list[int | str] = Field(description="candidate item ids, in the order the rows come back")
    service: str = Field(FULL_SERVICE, description="FeatureService to serve (one per ranking model version)")


def create_app(run_dir: str | Path) -> FastAPI:
    """The app of one run directory's feature repository (refused at start when the online store is empty)."""
    repo = FeatureRepo(run_dir)
    repo.reader(FULL_SERVICE)  # fail now, not on the first request, when nothing was materialized
    app = FastAPI(title="recsys features", description=__doc__)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "services": list(SERVICES), "project": repo.cfg.project}

    @app.post("/rank-features")
    async def rank_features(request: RankRequest) -> dict:
        try:
            frame = repo.reader(request.service).rank_frame(request.user_id, request.candidates)
        except DataError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        return {"service": request.service, **json_rows(frame)}

    return app


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 6566) -> None:
    """Run the endpoint until interrupted (loopback by default: expose it deliberately)."""
    import uvicorn

    uvicorn.run(create_app(run_dir), host=host, port=port, log_level="warning", access_log=False)
