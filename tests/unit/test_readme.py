"""The README's two fresh-machine commands stay true: CI runs exactly the README's test command."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as handle:
        return handle.read()


def test_ci_runs_the_readme_test_command():
    readme = read("README.md")
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", readme, re.DOTALL).group(1)
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    up_command, test_command = commands
    assert up_command.endswith("extproc up")
    assert test_command in read(".ci", "run")
