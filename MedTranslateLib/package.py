"""Model packages: a folder or .zip with `model.json` and `weights.safetensors` (never pickles).

Loading validates the card, checks the SHA-256 of the weights and builds the network in eval mode.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .card import CardError, ModelCard
from .errors import ModelPackageError
from .networks import build_network
from .networks.factory import parameter_count

CARD_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
INVERSE_WEIGHTS_FILE = "inverse_weights.safetensors"
# the most a package member may hold, checked before it is read: a card is a few kB, weights tens of MB
MEMBER_LIMITS = {CARD_FILE: 1 << 20, WEIGHTS_FILE: 1 << 30, INVERSE_WEIGHTS_FILE: 1 << 30}


@dataclass
class TranslationModel:
    """A loaded package: its card, its network (eval mode, CPU) and, for CycleGAN, the inverse network."""

    card: ModelCard
    network: torch.nn.Module
    path: Path
    inverse_network: Optional[torch.nn.Module] = None


def read_card(path: Union[str, Path]) -> ModelCard:
    """The validated card of the package at `path` (folder or .zip), without reading weights."""
    path = Path(path)
    blob = _read_member(path, CARD_FILE)
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelPackageError(f"{path}: {CARD_FILE} is not UTF-8 text") from None
    try:
        return ModelCard.from_dict(json.loads(text))
    except json.JSONDecodeError as error:
        raise ModelPackageError(f"{path}: {CARD_FILE} is not valid JSON ({error.msg}, line {error.lineno})") from None
    except RecursionError:
        raise ModelPackageError(f"{path}: {CARD_FILE} is nested too deeply to be a model card") from None
    except CardError as error:
        raise ModelPackageError(f"{path}: {CARD_FILE}: {error}") from None


def load_package(path: Union[str, Path]) -> TranslationModel:
    """Load and verify the package at `path`; raises ModelPackageError naming what is wrong."""
    path = Path(path)
    card = read_card(path)
    network = _load_network(path, card, WEIGHTS_FILE, card.weights_sha256, card.in_channels)
    inverse = None
    if card.inverse_weights_sha256 is not None:
        inverse = _load_network(path, card, INVERSE_WEIGHTS_FILE, card.inverse_weights_sha256, card.in_channels)
    return TranslationModel(card=card, network=network, path=path, inverse_network=inverse)


def _load_network(path: Path, card: ModelCard, member: str, digest: str, in_channels: int) -> torch.nn.Module:
    blob = _read_member(path, member)
    actual = hashlib.sha256(blob).hexdigest()
    if actual != digest:
        raise ModelPackageError(f"{path}: {member} has SHA-256 {actual[:12]}…, the card says {digest[:12]}…; "
                                "the weights are corrupt or do not belong to this card")
    try:
        state = load_safetensors(blob)
    except SafetensorError as error:
        raise ModelPackageError(f"{path}: {member} is not a safetensors file ({error})") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelPackageError(f"{path}: {member} holds NaN or infinite values in '{name}'; the weights are "
                                    "broken (a diverged training run?)")
    try:  # counted on the meta device: a card asking for a far larger network than its weights is refused
        # before anything is allocated
        wanted = parameter_count(card.architecture, in_channels=in_channels, out_channels=1)
    except ValueError as error:
        raise ModelPackageError(f"{path}: {error}") from None
    held = sum(tensor.numel() for tensor in state.values())
    if wanted != held:
        raise ModelPackageError(f"{path}: {member} does not fit the card's architecture (it holds {held} values, "
                                f"the architecture needs {wanted})")
    network = build_network(card.architecture, in_channels=in_channels, out_channels=1)
    for name, wanted_tensor in network.state_dict().items():
        given = state.get(name)
        if given is not None and wanted_tensor.is_floating_point() and not given.is_floating_point():
            raise ModelPackageError(f"{path}: {member} holds '{name}' as {str(given.dtype).replace('torch.', '')}; "
                                    "the network needs floating-point weights (fp16, bf16 or fp32)")
    try:
        network.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0]
        raise ModelPackageError(f"{path}: {member} does not fit the card's architecture ({first})") from None
    return network.eval()


def _read_member(path: Path, member: str) -> bytes:
    """The bytes of `member` of the package folder or zip at `path`, refused before reading when larger than
    MEMBER_LIMITS allows, or when it or the package is not a regular file or folder."""
    if not path.exists():
        raise ModelPackageError(f"{path}: no such model package")
    limit = MEMBER_LIMITS.get(member, 1 << 20)
    if path.is_dir():
        file = path / member
        if not file.is_file():
            raise ModelPackageError(f"{path}: package has no {member}{'' if not file.exists() else ' file'}")
        _check_size(path, member, file.stat().st_size, limit)
        return file.read_bytes()
    if not path.is_file():
        raise ModelPackageError(f"{path}: is not a regular file or a folder (a FIFO, device or socket)")
    try:
        if not zipfile.is_zipfile(path):
            raise ModelPackageError(f"{path}: not a model package (a folder or .zip with {CARD_FILE} and "
                                    f"{WEIGHTS_FILE})")
        with zipfile.ZipFile(path) as archive:
            entries = [info for info in archive.infolist() if not info.is_dir() and Path(info.filename).name == member]
            if not entries:
                raise ModelPackageError(f"{path}: package has no {member}")
            if len(entries) > 1:
                raise ModelPackageError(f"{path}: package holds {len(entries)} files named {member}; it must hold one")
            _check_size(path, member, entries[0].file_size, limit)
            return archive.read(entries[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError) as error:
        raise ModelPackageError(f"{path}: the zip is damaged ({error})") from None


def _check_size(path: Path, member: str, size: int, limit: int) -> None:
    if size > limit:
        raise ModelPackageError(f"{path}: {member} is {size / 2**20:.1f} MiB, more than a package may hold "
                                f"({limit / 2**20:.0f} MiB)")


def weights_blob(state: Mapping[str, torch.Tensor], half: bool = True) -> bytes:
    """Safetensors bytes of a state dict; floating tensors in fp16 when `half` (small packages)."""
    tensors: Dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        tensors[name] = tensor
    return save_safetensors(tensors)


def save_package(card_fields: Dict[str, Any], network: torch.nn.Module, out_dir: Union[str, Path],
                 inverse_network: Optional[torch.nn.Module] = None, half: bool = True) -> ModelCard:
    """Write a package folder atomically: weights, their hashes filled into the card, the card last.

    `card_fields` is every card key except the weight hashes.
    """
    out_dir = Path(out_dir)
    blobs = {WEIGHTS_FILE: weights_blob(network.state_dict(), half)}
    fields = dict(card_fields, weights_sha256=hashlib.sha256(blobs[WEIGHTS_FILE]).hexdigest())
    if inverse_network is not None:
        blobs[INVERSE_WEIGHTS_FILE] = weights_blob(inverse_network.state_dict(), half)
        fields["inverse_weights_sha256"] = hashlib.sha256(blobs[INVERSE_WEIGHTS_FILE]).hexdigest()
    try:
        card = ModelCard.from_dict(fields)
    except CardError as error:
        raise ModelPackageError(f"card for {out_dir}: {error}") from None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # named before it exists, so that a signal arriving just after its creation still removes it; created with
    # the user's usual mode (umask), as the package will be
    staging = out_dir.parent / f".{out_dir.name[:64]}.{secrets.token_hex(8)}.tmp"
    try:
        staging.mkdir()
        for name, blob in blobs.items():
            (staging / name).write_bytes(blob)
        (staging / CARD_FILE).write_text(card.to_json() + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return card
