"""Pre-upload hooks: `moderate hook` and the pre-commit hook, in a real git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from .conftest import BIN, run_cli

ROOT = Path(__file__).resolve().parent.parent


def test_hook_reads_paths_from_stdin_and_honours_allow_review(banked, photos, edited, tmp_path):
    flagged = edited[0][2]
    clean = photos["chelsea"]
    assert run_cli("hook", str(clean), data_dir=banked.data_dir).returncode == 0
    out = run_cli("hook", data_dir=banked.data_dir, stdin=f"{clean}\n{flagged}\n".encode())
    assert out.returncode == 4 and b"astronaut" in out.stdout
    nul = run_cli("hook", "--null", data_dir=banked.data_dir, stdin=f"{clean}\0{flagged}\0".encode())
    assert nul.returncode == 4
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnope")
    assert run_cli("hook", str(broken), data_dir=banked.data_dir).returncode == 3
    assert run_cli("hook", str(broken), "--allow-review", data_dir=banked.data_dir).returncode == 0
    assert run_cli("hook", data_dir=banked.data_dir, stdin=b"").returncode == 0


def test_manifest_is_valid_for_pre_commit():
    manifest = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = manifest
    assert (hook["id"], hook["entry"]) == ("moderate", "moderate hook")
    out = subprocess.run([str(BIN / "pre-commit"), "validate-manifest", str(ROOT / ".pre-commit-hooks.yaml")],
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def git(repo: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, env=env, timeout=300)


def test_pre_commit_blocks_a_flagged_image_and_lets_a_clean_one_through(banked, photos, edited, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "MODERATE_HOME": str(banked.data_dir), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache")}
    git(repo, "init", "-q", env=env)
    # The hook as the manifest defines it, run from this checkout's environment (no network needed).
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    local = {**hook, "language": "system"}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}))
    assert subprocess.run([str(BIN / "pre-commit"), "install"], cwd=repo, env=env, capture_output=True).returncode == 0

    shutil.copy(photos["chelsea"], repo / "cat.png")
    git(repo, "add", ".", env=env)
    ok = git(repo, "commit", "-qm", "clean image", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    shutil.copy(edited[0][2], repo / "meme.jpg")
    git(repo, "add", "meme.jpg", env=env)
    refused = git(repo, "commit", "-qm", "flagged image", env=env)
    assert refused.returncode != 0
    shown = refused.stdout + refused.stderr  # git passes the hook's output through on stderr
    assert b"exit code: 4" in shown and b"BLOCK  meme.jpg  pdq.distance<=31 TERROR/astronaut" in shown
    assert git(repo, "log", "--oneline", env=env).stdout.count(b"\n") == 1


def test_hook_without_banks_fails_instead_of_allowing(edited, tmp_path):
    # MODERATE_HOME unset: the default data folder (under XDG_DATA_HOME) has no bank at all
    env = {k: v for k, v in os.environ.items() if k not in ("MODERATE_HOME", "MODERATE_CHROMA_URL")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    out = subprocess.run([str(BIN / "moderate"), "hook", str(edited[0][2])], capture_output=True, env=env, timeout=300)
    err = out.stderr.decode()
    assert out.returncode == 1 and err.count("\n") == 1, (out.returncode, err)
    assert err.startswith(f"error: {tmp_path / 'xdg' / 'moderate'}: nothing to check against")
    checked = subprocess.run([str(BIN / "moderate"), "check", "-"], input=edited[0][2].read_bytes(), capture_output=True,
                             env=env, timeout=300)
    assert checked.returncode == 1 and b"nothing to check against" in checked.stderr


def _repo(tmp_path, banked) -> tuple[Path, dict]:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "MODERATE_HOME": str(banked.data_dir), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}
    git(repo, "init", "-q", env=env)
    return repo, env


def test_readme_recipe_passes_ordinary_commits_and_blocks_flagged_images(banked, photos, edited, tmp_path):
    (recipe,) = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("git diff --cached")]
    assert "--diff-filter=d" in recipe and recipe.endswith("| moderate hook --null")
    repo, env = _repo(tmp_path, banked)
    (repo / "old.txt").write_text("to be deleted\n")
    shutil.copy(photos["coins"], repo / "old.png")
    git(repo, "add", ".", env=env)
    git(repo, "commit", "-qm", "first", env=env)
    (repo / "app.py").write_text("print('hello')\n")
    shutil.copy(photos["chelsea"], repo / "cat.png")
    git(repo, "rm", "-q", "old.txt", "old.png", env=env)
    git(repo, "add", ".", env=env)

    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=repo, env=env, capture_output=True,
                              timeout=300)

    ok = run(recipe)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert b"cat.png" in ok.stdout and b"app.py" not in ok.stdout + ok.stderr
    # Without the git filter the hook itself skips deleted paths and files that are not images.
    unfiltered = run("git diff --cached --name-only -z | moderate hook --null --json")
    assert unfiltered.returncode == 0, unfiltered.stdout + unfiltered.stderr
    assert [json.loads(line)["source"] for line in unfiltered.stdout.splitlines()] == ["cat.png"]
    shutil.copy(edited[0][2], repo / "meme.jpg")
    git(repo, "add", "meme.jpg", env=env)
    assert run(recipe).returncode == 4


def test_hook_skips_by_content_not_by_name(banked, photos, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("a text file with an image's name\n")
    folder = tmp_path / "submodule"
    folder.mkdir()
    assert run_cli("hook", str(text), str(folder), str(tmp_path / "deleted.jpg"), data_dir=banked.data_dir).returncode == 0
    disguised = tmp_path / "README"  # an image without an image's name is still checked
    shutil.copy(photos["astronaut"], disguised)
    out = run_cli("hook", str(text), str(disguised), data_dir=banked.data_dir)
    assert out.returncode == 4 and b"astronaut" in out.stdout
    truncated = tmp_path / "cut.png"  # an image by its first bytes that does not decode: checked, review
    truncated.write_bytes(photos["coins"].read_bytes()[:200])
    assert run_cli("hook", str(truncated), data_dir=banked.data_dir).returncode == 3
