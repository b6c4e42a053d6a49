"""Where the real repodata subsets live: `shared/data/real-channels` beside the checkout (as
for sessions and CI), or $CONDA_UNSLOTH_REAL_CHANNELS. Tests skip, saying so, when absent."""

from __future__ import annotations

import os
from pathlib import Path

REAL_CHANNELS = Path(
    os.environ.get("CONDA_UNSLOTH_REAL_CHANNELS")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-channels"
)
