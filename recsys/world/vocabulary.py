"""The synthetic world's vocabularies: topic and style words the texts and labels are drawn from."""

from __future__ import annotations

TOPICS: list[tuple[str, list[str]]] = [
    ("cooking", ["recipe", "kitchen", "pasta", "bake", "chef", "spicy", "dessert", "soup", "grill", "flavor",
                 "noodle", "sauce", "oven", "breakfast"]),
    ("travel", ["beach", "mountain", "hotel", "flight", "island", "backpack", "city", "passport", "road", "trip",
                "sunset", "hiking", "cruise", "museum"]),
    ("football", ["goal", "striker", "stadium", "match", "penalty", "league", "goalkeeper", "dribble", "referee",
                  "tackle", "midfield", "derby", "trophy", "kickoff"]),
    ("music", ["guitar", "melody", "concert", "drum", "piano", "singer", "chorus", "band", "rhythm", "album",
               "vinyl", "violin", "lyrics", "studio"]),
    ("gaming", ["console", "level", "boss", "speedrun", "controller", "quest", "arcade", "multiplayer", "loot",
                "pixel", "respawn", "joystick", "esports", "dungeon"]),
    ("pets", ["puppy", "kitten", "dog", "cat", "leash", "paw", "fur", "vet", "parrot", "hamster", "bark", "purr",
              "treat", "aquarium"]),
    ("fitness", ["workout", "gym", "squat", "cardio", "yoga", "muscle", "stretch", "protein", "marathon", "pushup",
                 "dumbbell", "sprint", "pilates", "sweat"]),
    ("fashion", ["outfit", "dress", "sneaker", "jacket", "runway", "denim", "makeup", "handbag", "lipstick",
                 "jewelry", "boutique", "scarf", "heels", "wardrobe"]),
    ("science", ["experiment", "molecule", "telescope", "physics", "laboratory", "robot", "galaxy", "chemistry",
                 "microscope", "atom", "rocket", "fossil", "circuit", "theory"]),
    ("comedy", ["joke", "prank", "sketch", "standup", "laugh", "parody", "meme", "blooper", "sitcom", "punchline",
                "skit", "funny", "roast", "improv"]),
    ("cars", ["engine", "turbo", "drift", "garage", "sedan", "horsepower", "racing", "tire", "convertible",
              "gearbox", "exhaust", "motorsport", "pickup", "dashboard"]),
    ("nature", ["forest", "river", "wildlife", "flower", "waterfall", "eagle", "meadow", "rainforest", "glacier",
                "volcano", "butterfly", "canyon", "moss", "storm"]),
    ("art", ["painting", "canvas", "sketchbook", "sculpture", "watercolor", "gallery", "brush", "portrait", "mural",
             "pottery", "charcoal", "easel", "mosaic", "calligraphy"]),
    ("tech", ["smartphone", "laptop", "gadget", "unboxing", "software", "processor", "keyboard", "headphones",
              "drone", "app", "charger", "monitor", "coding", "server"]),
    ("dance", ["choreography", "ballet", "salsa", "hiphop", "tango", "breakdance", "routine", "spin", "ballroom",
               "tapdance", "groove", "twirl", "waltz", "flashmob"]),
    ("finance", ["stocks", "budget", "savings", "crypto", "investing", "mortgage", "dividend", "inflation", "taxes",
                 "portfolio", "banking", "loan", "retirement", "wallet"]),
]

STYLES: list[tuple[str, list[str]]] = [
    ("calm", ["calm", "relaxing", "gentle", "soothing", "slow"]),
    ("energetic", ["energetic", "hype", "fast", "intense", "loud"]),
    ("vintage", ["vintage", "retro", "classic", "nostalgic", "oldschool"]),
    ("minimal", ["minimal", "clean", "sleek", "tidy", "plain"]),
    ("dramatic", ["dramatic", "epic", "cinematic", "dark", "moody"]),
    ("playful", ["playful", "cute", "colorful", "silly", "bubbly"]),
    ("cozy", ["cozy", "warm", "homey", "soft", "snug"]),
    ("raw", ["raw", "unfiltered", "handheld", "gritty", "candid"]),
]

NOISE_WORDS: list[str] = [
    "video", "today", "new", "best", "my", "watch", "check", "this", "first", "time", "ever", "day", "vlog",
    "part", "episode", "quick", "guide", "tips", "ultimate", "top", "ten", "how", "why", "story", "weekend",
    "live", "update", "review", "challenge", "moments", "highlights", "short", "clip", "official", "full",
    "version", "trying", "really", "with", "friends", "family", "morning", "night", "life", "real", "honest",
    "insane", "easy", "tutorial", "you", "must", "see", "again", "finally", "little", "big",
]
