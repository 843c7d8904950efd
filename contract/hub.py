"""A run on the Hugging Face Hub: `hf://<user>/<name>[@<revision>][/<folder>]` (huggingface_hub's own URI syntax)
names a model repository holding a run folder, as `python -m training.publish` uploads it. The app serves it after
one download (snapshot_download: cached, then offline); a pinned revision (a commit hash) never changes under it."""

from pathlib import Path

from contract.files import RUN_JSON, ArtifactError

RUN_REPO_VARIABLE = "RUN_REPO"  # on a Space: the published run to serve, e.g. hf://you/flan-t5-dialogsum-methods


def is_hub_run(location: str) -> bool:
    return str(location).startswith("hf://")


def parse_run_uri(location: str):
    """The parts of hf://<user>/<name>[@<revision>][/<folder>] (huggingface_hub's HfUri), checked without any
    download: a model repository and a plain folder inside it."""
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    try:
        uri = parse_hf_uri(location)
    except HfUriError as e:
        raise ArtifactError(f"{location}: not a Hub location ({e}); write hf://<user>/<name>, optionally "
                            "@<revision> and /<folder>.") from None
    if uri.type != "model":
        raise ArtifactError(f"{location}: a published run is a model repository, not a {uri.type}.")
    if any(part in ("..", "") for part in uri.path_in_repo.split("/")) and uri.path_in_repo:
        raise ArtifactError(f"{location}: the folder {uri.path_in_repo!r} must be a plain path inside the repository "
                            "(no '..' or empty parts).")
    if uri.id.count("/") != 1:
        raise ArtifactError(f"{location}: name the repository as hf://<user>/<name>.")
    return uri


def resolve_run(location: str) -> Path:
    """A local run folder for `location`: itself, or the downloaded snapshot of an hf:// repository."""
    if not is_hub_run(location):
        return Path(location)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    uri = parse_run_uri(location)
    try:
        snapshot = Path(snapshot_download(uri.id, revision=uri.revision))
        folder = snapshot / uri.path_in_repo
    except LocalEntryNotFoundError:
        raise ArtifactError(
            f"{location}: not downloaded yet and the Hub cannot be reached (offline, or "
            "HF_HUB_OFFLINE=1). Connect once to download it; it is served from the cache after."
        ) from None
    except HfHubHTTPError as e:
        raise ArtifactError(
            f"{location}: the Hub refused the download ({str(e).splitlines()[0]}). Check the name and "
            "revision; a private repository needs HF_TOKEN (or `hf auth login`)."
        ) from None
    if not folder.resolve().is_relative_to(snapshot.resolve()):
        raise ArtifactError(f"{location}: the folder {uri.path_in_repo!r} leads outside the downloaded repository.")
    if not (folder / RUN_JSON).exists():
        raise ArtifactError(f"{location}: the repository holds no run folder (no {RUN_JSON} at "
                            f"{uri.path_in_repo or 'its top level'}); publish one with `python -m training.publish`.")
    return folder
