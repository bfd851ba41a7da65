from django.apps import AppConfig


class TuningConfig(AppConfig):
    name = "tuning"
    verbose_name = "Fine-tuned adapters"

    def ready(self) -> None:
        from ingestion.signals import document_changed

        document_changed.connect(_document_changed, dispatch_uid="tuning.stale")


def _document_changed(sender, *, document_ids, reason, **kwargs) -> None:
    from tuning.services import adapters_mark_stale

    adapters_mark_stale(document_ids=list(document_ids), reason=reason)
