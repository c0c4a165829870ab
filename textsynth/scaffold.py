"""`textsynth init`: a commented starter pipeline and its templates that build as they are."""

from __future__ import annotations

import re
from pathlib import Path

from textsynth.errors import ConfigError

STARTERS = Path(__file__).parent / "starters"
TASKS = ("sentiment", "topics", "intent", "sft")


def init_project(name: str, task: str, root: Path, force: bool = False) -> list[Path]:
    """Write pipelines/<name>.yaml and the starter's templates under `root`; the files written."""
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise ConfigError(f"init {name!r}: use letters, digits, '.', '_' or '-' (it names runs/<name>)")
    if task not in TASKS:
        raise ConfigError(f"--task {task!r}: choose one of {', '.join(TASKS)}")
    starter = STARTERS / task
    yaml_text = re.sub(r"(?m)^name: .*$", f"name: {name}", (starter / "pipeline.yaml").read_text(), count=1)
    targets = {root / "pipelines" / f"{name}.yaml": yaml_text}
    for template in sorted((starter / "prompts").glob("*.jinja")):
        targets[root / "prompts" / template.name] = template.read_text()
    clash = [p for p, text in targets.items() if p.exists() and p.read_text() != text]
    if clash and not force:
        raise ConfigError(f"{clash[0]}: already exists with other content (pick another name or use --force)")
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(targets)
