"""The README's "Adding your own rule" example, run as written in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_block(heading: str) -> str:
    """The first ```python block after ``heading`` in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_adding_your_own_rule_runs_as_written(tmp_path):
    code = readme_block("## Adding your own rule")
    assert "register_rule" in code and 'rule="sign"' in code
    script = tmp_path / "my_rules.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300, env={"MPLBACKEND": "Agg", "PATH": "", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    accuracy = {m.group(1): float(m.group(2)) for m in
                (re.match(r"(\w+): test accuracy ([0-9.]+)", line) for line in lines) if m}
    assert set(accuracy) == {"reference", "torch"}, out.stdout
    # sign-symmetric feedback learns the digits (chance is 0.1) ...
    assert min(accuracy.values()) > 0.8, accuracy  # reference, seed 0: 0.91
    # ... and both backends ran the same rule from the same seed (float32 torch: a few 1e-3 apart)
    assert abs(accuracy["reference"] - accuracy["torch"]) < 0.02, accuracy
    assert lines[-1] == "True"
