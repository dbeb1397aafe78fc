"""Synthetic omni-modal world: ground truth for the dataset generator and the lifetime simulator.

- `WorldConfig` (config.py): size, latents, media, missing-modality rates, behaviour law parameters.
- `generate_world(cfg)` (generator.py): latents and law (latents.py), texts and queries (texts.py, vocabulary.py)
  and the logged impressions (the logging policy through replay.py's day loop).
- `render_media(world, root)` (render.py): PNG images and WAV clips that render the latent content with noise.
- `BehaviourLaw` (behaviour.py): the response and return law, replayed by `ranking.simulate`.
- `load_world(dataset_root)`: the ground truth saved under `<dataset>/world/` by
  `recsys.data.adapters.synthetic.prepare_synthetic`.
"""

from recsys.world.behaviour import BehaviourLaw
from recsys.world.config import WorldConfig
from recsys.world.generator import (
    STYLES,
    TOPICS,
    ItemLatents,
    UserLatents,
    World,
    WorldSample,
    generate_world,
    load_world,
)

__all__ = ["BehaviourLaw", "ItemLatents", "STYLES", "TOPICS", "UserLatents", "World", "WorldConfig",
           "WorldSample", "generate_world", "load_world"]
