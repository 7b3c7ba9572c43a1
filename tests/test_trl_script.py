"""The README's own-TRL-script example runs as printed, on a curriculum from `gainrl export --format hf`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from gainrl_ops import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_script() -> str:
    section = README.read_text().split("### Your own TRL script", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_trl_script_trains_on_an_exported_curriculum(tmp_path: Path, gainrl_home: Path, tiny_model_path: Path) -> None:
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i} + {i % 4}?", "answer": str(i + i % 4)}) + "\n" for i in range(48)))
    assert cli.main(["score", "--data", str(data), "--model", str(tiny_model_path), "--name", "sums"]) == 0
    assert cli.main(["export", "--dataset", "sums", "--format", "hf", "--out", str(tmp_path / "curriculum")]) == 0
    (script := tmp_path / "train.py").write_text(readme_script())
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "curriculum"), str(tiny_model_path), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "GAINRL_HOME": str(gainrl_home)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    mus = re.search(r"window centre \(mu\) per epoch: \[(.*)\]", done.stdout).group(1).split(", ")
    assert len(mus) == 2 and float(mus[0]) == 0.0, "two epochs of feedback, starting at the top of the ranking"
    angles = [float(a) for a in re.search(r"feedback angle per epoch: \[(.*)\]", done.stdout).group(1).split(", ")]
    assert len(angles) == 2 and all(-1.0 <= a <= 1.0 for a in angles), "a cosine, measured on the rollouts"
