"""README.md stays true: its two commands are what CI runs, and its example runs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_exactly_two_commands_and_ci_runs_them():
    cmds = [b.strip() for b in blocks("bash")]
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    ci = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines()
          if l.strip() and not l.lstrip().startswith("#")]
    assert cmds[0] in ci and cmds[1] in ci


def test_readme_python_example_runs():
    (code,) = blocks("python")
    env = {}
    exec(compile(code, "README.md", "exec"), env)
    assert env["probs"].shape == (37, 10)
