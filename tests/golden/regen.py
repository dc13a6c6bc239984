"""Rewrite tests/golden/expected.json from the current code: ``.venv/bin/python -m tests.golden.regen``.

Only for a change that is meant to move the aggregate's bytes (a new definition, a new case): the
golden file exists to catch the changes that are not meant to, so say why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import safetensors

from tests.golden.inputs import fingerprints

EXPECTED = Path(__file__).with_name("expected.json")


def main() -> None:
    document = {
        "about": "Golden global-model CIDs: tests/golden/test_golden.py recomputes them; "
        "`python -m tests.golden.regen` rewrites this file; .ci/golden checks them under other numpy versions.",
        "written_with": {"numpy": np.__version__, "safetensors": safetensors.__version__},
        **fingerprints(),
    }
    partial = EXPECTED.with_suffix(".json.partial")
    partial.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    os.replace(partial, EXPECTED)
    print(f"wrote {EXPECTED} ({len(document['cases'])} cases)")


if __name__ == "__main__":
    main()
