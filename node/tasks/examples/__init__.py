"""Example tasks shipped with fedledger, each a folder that `fedledger task new DIR --example NAME` copies.

- ``tabular``: the `task new` template itself (an MLP on CSV files with a header, label last;
  scikit-learn's breast-cancer data without a file).
- ``images``: a CNN of 1.4 million parameters on 32x32 RGB images from a party's ``.npz`` file.
- ``finetune``: a frozen pretrained backbone with low-rank adapters (LoRA); only the adapters train
  and travel, so an update is as small as the adapters.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES: dict[str, Path | None] = {
    "tabular": None,  # written by node.tasks.template
    "images": Path(__file__).parent / "images_cnn",
    "finetune": Path(__file__).parent / "finetune_lora",
}
