"""Push a run's hub folder to a Hugging Face dataset repo with huggingface_hub.

The token comes from `--token`, `HF_TOKEN` or the stored login and is never written anywhere:
not into the run directory, the card, logs, or error messages (which are scrubbed of it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from textsynth.errors import ExportError, RunDirError

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def push_run(
    run_dir: str | Path, repo: str, private: bool = False, token: str | None = None, dry_run: bool = False
) -> tuple[list[str], str]:
    """(files uploaded or to upload, repo url)."""
    folder = Path(run_dir) / "hub"
    if not REPO_ID.match(repo) or ".." in repo:
        raise ExportError(f"--repo {repo!r}: not a valid repo id; use owner/name (letters, digits, - _ .)")
    if not (folder / "README.md").is_file():
        raise RunDirError(f"{folder}: no exported hub folder; run `textsynth export {run_dir}` first")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if dry_run:
        return files, str(folder)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        url = api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(folder),
            repo_id=repo,
            repo_type="dataset",
            commit_message=f"Upload {Path(run_dir).name} dataset built with textsynth",
        )
    except (HfHubHTTPError, OSError, ValueError) as exc:
        message = str(exc).splitlines()[0][:200]
        if token:
            message = message.replace(token, "***")
        raise ExportError(f"push to {repo!r} failed: {message} (check the repo id and your token)") from None
    return files, str(url)
