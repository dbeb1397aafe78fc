"""Ranking: labelled examples, LightGBM rankers, metrics with bootstrap CIs, MLflow-tracked experiments.

Modules: examples (entity frames from the split), metrics (auc, gauc, logloss, bootstrap), lgbm (ranker),
experiment (variants -> MLflow runs -> comparison table), plots, policy (ranker as a simulator Policy).
Import the submodules directly; this package imports nothing heavy on its own.
"""
