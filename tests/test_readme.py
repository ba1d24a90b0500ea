"""The README gives exactly the two set-up commands, CI runs the test one, and the images it
shows exist (the issue: a fresh machine needs nothing else)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
INSTALL = "python -m pip install -r requirements.txt"


def test_two_commands_install_and_open_or_test() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    commands = [line for b in blocks for line in b.strip().splitlines()]
    assert commands == [f"{INSTALL} && jupyter lab notebooks/00-start-here.ipynb", f"{INSTALL} && pytest"]


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"{INSTALL} && pytest" in ci


def test_images_in_the_readme_exist() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    local = [i for i in images if not i.startswith("http")]
    assert local, "the README shows at least one diagram"
    for path in local:
        assert (ROOT / path).is_file(), path
