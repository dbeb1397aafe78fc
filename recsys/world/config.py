"""Configuration of the synthetic omni-modal world (recsys.world).

Every default is small enough that the default world (2000 items, 300 users, 60 days) is generated and rendered
in well under half a minute on two CPU cores. All randomness derives from `seed`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class WorldConfig(BaseModel):
    """Size, latent structure, media, missing-modality rates and behaviour law of a synthetic world."""

    model_config = ConfigDict(extra="forbid")

    name: str = "synthetic"
    seed: int = 0

    # --- size and time ---------------------------------------------------------------------------------------
    n_items: int = Field(2000, ge=10)
    n_users: int = Field(300, ge=2)
    n_days: int = Field(60, ge=3)
    start_date: str = "2026-01-01"              # day 0 (UTC midnight); timestamps are start + fractional days
    initial_item_fraction: float = Field(0.3, ge=0, le=1)  # items created before day 0 (catalogue at start)
    initial_item_days: float = Field(30.0, gt=0)            # ... spread over this many days before day 0
    # the remaining items are created uniformly over [0, n_days): those of the last days are cold-start items

    # --- latent content: topics and styles --------------------------------------------------------------------
    n_topics: int = Field(12, ge=2, le=16)      # vocabularies exist for at most 16 topics
    n_styles: int = Field(6, ge=1, le=8)
    secondary_topic_prob: float = Field(0.3, ge=0, le=1)   # chance an item mixes in a second topic
    topic_zipf: float = Field(0.6, ge=0)        # topic popularity skew of the catalogue (0 = uniform)

    # --- latent collaborative part (shown by NO modality) ------------------------------------------------------
    # 4 communities, one per user, weight 2: at ~60 impressions per item, the logged data reveals an item's
    # community (the ID teacher's linear probe: 70% vs 25% chance). With 8 communities, 1-2 per user and weight
    # 1.5 it did not (21% vs 12.5%), so no teacher, and no CRE, could recover it.
    n_communities: int = Field(4, ge=1)         # hidden taste communities of items and users
    hype_scale: float = Field(1.0, ge=0)        # item hype ~ Exponential(hype_scale), decays with item age
    hype_decay_days: float = Field(10.0, gt=0)

    # --- users -------------------------------------------------------------------------------------------------
    interest_peaks: tuple[int, int] = (2, 3)    # each user loves 2..3 topics
    interest_floor: float = Field(0.05, ge=0)   # weight of every other topic relative to the peaks' sum
    user_communities: tuple[int, int] = (1, 1)  # home communities per user
    activity_beta: tuple[float, float] = (2.0, 2.0)   # base daily return probability ~ Beta(a, b)

    # --- utility = bias + content part + collaborative part (+ logistic noise at response time) ---------------
    w_topic: float = 3.0          # x user interest . item topic mix (interest normalised so its max is 1)
    w_style: float = 0.6          # x user style preference (N(0,1)) of the item's style
    w_quality: float = 1.0        # x user quality taste (~1) x item quality (N(0,1))
    w_community: float = 2.0      # x user affinity (0/1) of the item's community
    w_hype: float = 0.5           # x item hype x exp(-age / hype_decay_days)
    target_like_rate: float = Field(0.15, gt=0, lt=1)   # like rate of uniformly random exposure (sets the bias)
    engagement_noise: float = Field(0.6, ge=0)   # shared noise of like and watch per impression (N(0, s))
    watch_slope: float = 1.0
    watch_offset: float = 1.2     # watch logit = slope * (utility + noise) + offset (+ watch noise)
    watch_noise: float = Field(0.6, ge=0)
    finish_threshold: float = Field(0.9, gt=0, le=1)   # finish = watch_ratio >= threshold

    # --- return law --------------------------------------------------------------------------------------------
    like_weight: float = 1.0      # satisfaction = mean(watch_ratio) + like_weight * mean(like)
    return_gain: float = 3.0      # logit(return) = base_logit(user) + gain * (satisfaction - reference)
    memory_decay: float = Field(0.7, ge=0, le=1)  # an absent user's remembered satisfaction drifts to reference

    # --- logging policy of the dataset -------------------------------------------------------------------------
    session_size: int = Field(12, ge=1)          # impressions per active user-day
    policy_popularity: float = Field(0.4, ge=0)  # mixture weights (normalised): popularity of past likes,
    policy_random: float = Field(0.4, ge=0)      # uniform over available items,
    policy_topic: float = Field(0.2, ge=0)       # weak topic match to the user's interests

    # --- media -------------------------------------------------------------------------------------------------
    image_size: int = Field(64, ge=16, le=512)
    n_frames: int = Field(2, ge=1, le=8)         # cover + key frames
    audio_seconds: float = Field(2.0, gt=0, le=30)
    sample_rate: int = Field(16000, ge=4000)
    colour_jitter: float = Field(12.0, ge=0)     # hue jitter (degrees) around the topic's hue
    pitch_jitter: float = Field(0.06, ge=0)      # relative jitter of the topic's base pitch

    # --- text --------------------------------------------------------------------------------------------------
    text_noise: float = Field(0.15, ge=0, le=1)  # chance a topic word is replaced by a word of another topic
    queries_per_item: float = Field(1.0, ge=0)   # mean search queries per item (Poisson)

    # --- missing modalities (independent per item) -------------------------------------------------------------
    missing_image: float = Field(0.1, ge=0, le=1)
    missing_audio: float = Field(0.2, ge=0, le=1)
    missing_title: float = Field(0.05, ge=0, le=1)
    missing_description: float = Field(0.2, ge=0, le=1)
    missing_tags: float = Field(0.1, ge=0, le=1)

    # --- dataset split -----------------------------------------------------------------------------------------
    split: tuple[float, float] = (0.15, 0.15)    # (valid_fraction, test_fraction) of interactions by time

    @model_validator(mode="after")
    def _check(self) -> WorldConfig:
        lo, hi = self.interest_peaks
        if not 1 <= lo <= hi <= self.n_topics:
            raise ValueError(f"interest_peaks={self.interest_peaks} must satisfy 1 <= lo <= hi <= n_topics")
        lo, hi = self.user_communities
        if not 1 <= lo <= hi <= self.n_communities:
            raise ValueError(f"user_communities={self.user_communities} must satisfy 1 <= lo <= hi <= "
                             "n_communities")
        if self.policy_popularity + self.policy_random + self.policy_topic <= 0:
            raise ValueError("policy_popularity + policy_random + policy_topic must be > 0")
        if min(self.activity_beta) <= 0:
            raise ValueError(f"activity_beta={self.activity_beta} must be positive")
        return self
