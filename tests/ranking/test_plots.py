"""The recipe figures draw what the embedding stage chose: one F1 panel per mined dataset, one bar per weight."""

from __future__ import annotations

from ranking.plots import recipe_figures


def test_recipe_figures_show_each_mined_dataset_and_each_weight():
    curve = {"threshold": [0.1, 0.5, 0.9], "precision": [0.2, 0.5, 1.0], "recall": [1.0, 0.6, 0.1],
             "f1": [0.33, 0.55, 0.18]}
    recipe = {"mining": {"hard": {"i2i": {"lambda": 0.5, "dropped": 3, "curve": curve},
                                  "q2i": {"lambda": 0.9, "dropped": 0, "curve": curve}}},
              "balance": {"dataset": ["i2i", "q2i"], "weight": [0.7, 0.3], "mean": [0.8, 0.6]}}
    figs = recipe_figures(recipe)
    assert set(figs) == {"recipe/hard_negative_f1.png", "recipe/balance_weights.png"}
    f1 = figs["recipe/hard_negative_f1.png"]
    assert [ax.get_title() for ax in f1.axes] == ["hard/i2i: lambda*=0.500, 3 dropped",
                                                  "hard/q2i: lambda*=0.900, 0 dropped"]
    bars = figs["recipe/balance_weights.png"].axes[0].patches
    assert [round(b.get_height(), 3) for b in bars] == [0.7, 0.3]
    assert recipe_figures({"stages": [], "balance": None, "mining": {}}) == {}
