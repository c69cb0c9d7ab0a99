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
    # What the comments promise: the probability to 4 decimals, then the dose and its probability.
    said_probability = float(re.search(r"# P = (0\.\d+) ±", example).group(1))
    said_dose, said_best = re.search(r"# dose (\d+) mg: P = (0\.\d+) ±", example).groups()
    probability = float(re.search(r"= (0\.\d+) ±", lines[0]).group(1))
    assert abs(probability - said_probability) < 5e-5
    dose, best = re.search(r"dose (\d+) mg .*P = (0\.\d+) ±", lines[1]).groups()
    assert dose == said_dose and abs(float(best) - float(said_best)) < 5e-5
