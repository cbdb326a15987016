"""The README's ten-line example runs and prints what it claims."""

import contextlib
import io
import re
from pathlib import Path


def test_readme_example_runs():
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("1.6431 ± 0.0068 (n=100000, ess=100000)")
