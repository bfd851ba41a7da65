"""PEFT LoRA adapter → GGUF LoRA file, with llama.cpp's own converter.

llama.cpp reads LoRA adapters only as GGUF. Its converter (``convert_lora_to_gguf.py``, which
imports ``convert_hf_to_gguf.py``, the ``conversion`` package and ``gguf-py``) is not published
as a package of its own; it ships inside the ``llama-cpp-python`` source distribution under
``vendor/llama.cpp/``. :func:`converter_install` downloads that sdist once with pip,
hash-pinned (``requirements/llama-convert.txt``; pip prepares its metadata, nothing is
compiled), and extracts only those files into ``LLM_CONVERTER_DIR`` (``var/llama-convert``):
the converter and the ``gguf`` module of the same llama.cpp revision, so they agree with each
other. ``manage.py prepare_models`` runs it (so ``scripts/bootstrap`` and ``make setup`` do).

The converter runs as a subprocess with this virtualenv's Python (torch, transformers and
safetensors are ours); it needs the base model's ``config.json``, which the de-quantised
training checkpoint has. Django-free.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements" / "llama-convert.txt"
STAMP = ".counsel-converter"
SCRIPT = "convert_lora_to_gguf.py"
# What is taken from the sdist's vendor/llama.cpp/: the converter and what it imports.
_KEEP_FILES = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py")
_KEEP_DIRS = ("conversion/", "gguf-py/gguf/")
# GGUF type of the adapter's tensors: half the size of f32, and what llama.cpp adds in.
OUTTYPE = "f16"


class ConversionError(Exception):
    """The converter could not be installed or refused an adapter; the message says why."""


def _requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def converter_ready(target: Path) -> bool:
    stamp = target / STAMP
    return (
        stamp.is_file()
        and stamp.read_text().strip() == _requirements_digest()
        and (target / SCRIPT).is_file()
    )


def converter_install(target: Path, *, log: Callable[[str], object] = print) -> bool:
    """Install the converter into ``target`` unless it is there; returns whether it installed."""
    if converter_ready(target):
        return False
    log(f"installing llama.cpp's LoRA converter from {REQUIREMENTS.name} (hash-pinned)")
    with tempfile.TemporaryDirectory(prefix="counsel-convert-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--no-binary", ":all:", "--require-hashes", "-r", str(REQUIREMENTS)]
        command += ["-d", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ConversionError(f"pip could not download the converter:\n{result.stderr}")
        archives = list(Path(tmp).glob("*.tar.gz"))
        if len(archives) != 1:
            raise ConversionError(f"expected one source archive, found {archives}")
        work = target.with_name(f".{target.name}.building-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        _extract(archives[0], work)
        (work / STAMP).write_text(_requirements_digest() + "\n")
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
    return True


def _extract(archive: Path, work: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            _, _, inner = member.name.partition("/vendor/llama.cpp/")
            if not inner or not member.isfile():
                continue
            if inner in _KEEP_FILES or inner.startswith(_KEEP_DIRS):
                member.name = inner
                tar.extract(member, work, filter="data")
    if not (work / SCRIPT).is_file():
        raise ConversionError(f"{archive.name} holds no vendor/llama.cpp/{SCRIPT}")


def adapter_to_gguf(*, peft_dir: Path, base_dir: Path, output: Path, converter: Path) -> Path:
    """Convert the PEFT adapter in ``peft_dir`` (trained on ``base_dir``) to ``output``."""
    if not converter_ready(converter):
        raise ConversionError(
            f"llama.cpp's LoRA converter is not installed in {converter}; run "
            "`manage.py prepare_models`"
        )
    partial = output.with_name(output.name + ".partial")
    partial.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{converter / 'gguf-py'}{os.pathsep}{converter}"}
    command = [sys.executable, str(converter / SCRIPT), "--base", str(base_dir)]
    command += ["--outtype", OUTTYPE, "--outfile", str(partial), str(peft_dir)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise ConversionError(f"the converter refused the adapter: {_last_error(result.stderr)}")
    os.replace(partial, output)
    return output


def _last_error(stderr: str) -> str:
    """The converter's own explanation: the last non-progress lines of its output."""
    lines = [line for line in stderr.strip().splitlines() if line and "INFO:" not in line]
    return " ".join(lines[-3:])[-600:] or "no message"
