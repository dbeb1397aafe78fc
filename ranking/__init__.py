"""Ranking: point-in-time frames, rankers, test-period evaluation, MLflow tracking, lifetime simulation.

Read in data-flow order:
- negatives (sampled negatives for implicit feedback), examples (labelled valid/test examples), embedding_sets,
  frames (Feast point-in-time frames, coverage guard), variants (which features each ranker variant uses);
- ranker (the Ranker protocol), holdout (the time holdout every ranker fits against), lgbm (LightGBM), dlrm
  (TorchRec DLRM: dlrm_preprocessing, dlrm_model, dlrm_training, calibration, importance), registry (kind ->
  ranker);
- metrics (auc, gauc, logloss, the one bootstrap), evaluation (variants' metrics, CIs, paired differences,
  segments), pyfunc (rankers as MLflow models; pyfunc_entry is its models-from-code file), tracking (MLflow),
  plots, experiment (fit -> evaluate -> track), report (the results table);
- simulate (the lifetime simulator, replaying the world's day: recsys.world.replay), policy (rankers as its
  policies).
Import the submodules directly; this package imports nothing on its own.
"""
