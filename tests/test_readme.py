"""The README's twenty-line example runs and prints what its comments say."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs_and_matches_its_comments():
    example = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(example.strip().splitlines()) <= 25
    done = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    probability = float(re.search(r"= (0\.\d+) ±", lines[0]).group(1))
    assert abs(probability - 0.7409) < 5e-4
    assert re.search(r"dose 275 mg .*P = 0\.903", lines[1])
