"""Errors a user can fix: the CLI prints their message as one line and exits 2."""

from __future__ import annotations


class TextsynthError(Exception):
    """Base of every error caused by input: its message names the place and the fix."""


class ConfigError(TextsynthError):
    """The pipeline YAML, its taxonomy or a CLI option is invalid."""


class TemplateError(TextsynthError):
    """A prompt template is missing, unsafe, or uses a variable nobody provides."""


class ModelError(TextsynthError):
    """The model cannot be resolved or loaded."""


class RunDirError(TextsynthError):
    """The run directory is unusable: locked, from an older schema, or not writable."""


class ExportError(TextsynthError):
    """There is nothing valid to export, or the export target is unusable."""


class Interrupted(Exception):
    """The user pressed Ctrl-C; finished records are saved and the build can be resumed."""

    def __init__(self, run_dir: str, saved: int, remaining: int) -> None:
        super().__init__(
            f"interrupted: {saved} records saved, {remaining} left; "
            f"continue with `textsynth resume {run_dir}`"
        )
