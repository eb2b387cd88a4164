"""Files that ``torch.load`` reads (GNN checkpoints, MACE models, MD checkpoints): one loader for all of them, so
that a file of any other content (text, an empty or a truncated file, random bytes, a zip of something else, a
model of the other kind) is one InputError naming the file and what was expected, whatever torch raised for it."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from capml.errors import InputError

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_reason(err: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message`` of a library's exception, for the end of a one-line error."""
    text = _ANSI.sub("", str(err))
    if "Unpickler error:" in text:  # torch's weights-only refusal: the reason is in the middle of a long text
        text = text.split("Unpickler error:", 1)[1].split("Check the documentation", 1)[0]
        text = " ".join(text.split()).split(". Please use", 1)[0]
    text = " ".join(text.strip().splitlines()[:1]).strip()
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def saved_kind(path: str | Path) -> str | None:
    """What a torch file holds, from the module names in its pickle: "a MACE model" or "a Lightning checkpoint";
    None when it is not a torch zip archive or says neither."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next((archive.read(n) for n in archive.namelist() if n.endswith("/data.pkl")), b"")
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        return None
    if b"mace.modules" in pickled:
        return "a MACE model"
    if b"pytorch-lightning_version" in pickled or (b"state_dict" in pickled and b"hyper_parameters" in pickled):
        return "a Lightning checkpoint"
    return None


def load_torch_file(path: str | Path, what: str, map_location="cpu", weights_only: bool | None = None,
                    expected: str | None = None):
    """``torch.load(path)``; InputError ``<path>: <what> not found`` for a missing file and ``<path>: not <what>
    (...)`` for any content torch cannot read (it raises KeyError, IndexError, EOFError, RuntimeError,
    UnpicklingError, ... depending on the bytes), ending with ``; expected <expected>`` when given.
    ``weights_only``: torch's default when None."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as err:  # noqa: BLE001 -- torch raises nearly any type for a file that is not one of its own
        kind = saved_kind(path)
        found = f"; the file is {kind}" if kind else ""
        raise InputError(f"{path}: not {what}{found} (torch cannot load it: {error_reason(err)})"
                         f"{f'; expected {expected}' if expected else ''}") from err
