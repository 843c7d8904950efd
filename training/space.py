"""Deploy the app as a Hugging Face Space that serves a published run: one command.

    python -m training.publish --space you/flan-t5-methods --run hf://you/flan-t5-dialogsum-methods
    python -m training.publish --space you/flan-t5-methods --run hf://you/run --hardware cpu-basic --dry_run
    python -m training.publish --space you/flan-t5-methods --run hf://you/run --votes_bucket you/votes

With huggingface_hub: `create_repo(repo_type="space", space_sdk="gradio", space_hardware=...)` (ZeroGPU,
`zero-a10g`, by default: the hardware a free account may host Gradio Spaces on), one commit of the app's code
(app.py, contract/, dashboard/, scoring/: code and schemas only), the Space's README (front matter: Gradio
sdk_version, Python 3.12, app_file) and requirements (space/requirements.txt: ZeroGPU's torch range), the
variables RUN_REPO, SERVING_BACKEND=int8 on CPU hardware, and the vote store's (VOTES_DATASET, or VOTES_DB +
VOTES_JOURNAL on a mounted Storage Bucket), and a random VOTE_SECRET secret (stable voter hashes across restarts).
Nothing else goes up: no run files (the Space downloads the run), votes, keys, checkpoints or
tokens. Prints the Space's URL.
"""

import secrets
import subprocess
from pathlib import Path

from contract.files import VOTES_FILE, ArtifactError

ROOT = Path(__file__).resolve().parents[1]
CODE = ("contract", "dashboard", "scoring")         # the packages the app imports (never training/)
CODE_SUFFIXES = (".py", ".json")                   # code, and the contract's JSON Schemas
SPACE_REQUIREMENTS = ROOT / "space" / "requirements.txt"
GRADIO_VERSION = "6.31.0"                          # the sdk_version Spaces installs (as in requirements.txt)
PYTHON_VERSION = "3.12"                            # one of the two Pythons ZeroGPU runs (3.10, 3.12)
BUCKET_MOUNT = "/votes"                            # where a Storage Bucket for the votes is mounted


def space_readme(space: str, run: str, hardware: str) -> str:
    title = space.split("/")[-1]
    return (f"---\ntitle: {title}\nemoji: 🗣️\ncolorFrom: blue\ncolorTo: yellow\nsdk: gradio\nsdk_version: "
            f"{GRADIO_VERSION}\npython_version: \"{PYTHON_VERSION}\"\napp_file: app.py\npinned: false\n---\n\n"
            f"# {title}\n\nFine-tuning methods for FLAN-T5 on DialogSum compared side by side: streamed summaries of "
            f"any dialogue, blind votes and the cost-vs-quality charts. Serves the run `{run}` on `{hardware}`.\n")


def code_files() -> list[str]:
    """The app's code, relative to the project root: app.py and the .py/.json files of its packages that git
    tracks. Files git does not know (a scratch script, a token file, a local experiment) never go up: a Space is
    public by default."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", "app.py", *CODE], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise ArtifactError(f"the Space takes the files git tracks in {ROOT}, and git cannot list them ({e}): deploy "
                            "from a git clone of the project.") from None
    tracked = [f for f in listed.split("\0") if f]
    return [f for f in tracked if f == "app.py" or (Path(f).suffix in CODE_SUFFIXES and (ROOT / f).is_file()
                                                    and not (ROOT / f).is_symlink())]


def settings(run: str, space: str, votes_dataset: str | None, votes_bucket: str | None, hardware: str) -> dict:
    """The Space's variables, and its volumes (a Storage Bucket for the votes). A CPU Space serves through the
    int8 backend (SERVING_BACKEND=int8: benchmarks/README.md, P11); a GPU one exactly."""
    variables = {"RUN_REPO": run, **({"SERVING_BACKEND": "int8"} if hardware.startswith("cpu") else {})}
    volumes = []
    if votes_bucket:
        volumes.append({"type": "bucket", "source": votes_bucket, "mount_path": BUCKET_MOUNT})
        variables.update(VOTES_DB=f"{BUCKET_MOUNT}/{VOTES_FILE}", VOTES_JOURNAL="delete")
    if votes_dataset or not votes_bucket:
        variables["VOTES_DATASET"] = votes_dataset or f"{space}-votes"
    return {"variables": variables, "volumes": volumes}


def plan(run: str, space: str, hardware: str, votes_dataset=None, votes_bucket=None) -> dict:
    """Everything that would go up: {path in the Space: content (bytes) or local file}, and the settings."""
    if not run.startswith("hf://"):
        raise ArtifactError(f"--run {run}: a Space serves a published run; publish it first (python -m "
                            "training.publish --run ... --repo <user>/<name>), then give --run hf://<user>/<name>.")
    files = {f: ROOT / f for f in code_files()}
    files["README.md"] = space_readme(space, run, hardware).encode()
    files["requirements.txt"] = SPACE_REQUIREMENTS
    return {"files": files, "hardware": hardware, **settings(run, space, votes_dataset, votes_bucket, hardware)}


def describe(p: dict) -> str:
    lines = [*p["files"], f"hardware: {p['hardware']}",
             *[f"variable {k}={v}" for k, v in p["variables"].items()],
             *[f"volume {v['type']} {v['source']} at {v['mount_path']}" for v in p["volumes"]],
             "secret VOTE_SECRET=(random, set once)"]
    return "\n".join(lines)


def deploy(api, space: str, p: dict, commit_message: str) -> str:
    """Create or update the Space with `api` (huggingface_hub.HfApi); its URL."""
    from huggingface_hub import CommitOperationAdd, Volume

    volumes = [Volume(**v) for v in p["volumes"]] or None
    api.create_repo(space, repo_type="space", space_sdk="gradio", space_hardware=p["hardware"], exist_ok=True,
                          space_volumes=volumes)
    api.create_commit(repo_id=space, repo_type="space", commit_message=commit_message,
                      operations=[CommitOperationAdd(path_in_repo=path, path_or_fileobj=content if isinstance(
                          content, bytes) else str(content)) for path, content in p["files"].items()])
    for key, value in p["variables"].items():
        api.add_space_variable(space, key, value)
    if volumes:
        api.set_space_volumes(space, volumes)
    if "VOTE_SECRET" not in api.get_space_secrets(space):
        api.add_space_secret(space, "VOTE_SECRET", secrets.token_hex(32))
    return f"https://huggingface.co/spaces/{space}"
