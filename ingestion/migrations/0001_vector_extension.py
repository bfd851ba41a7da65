from django.db import migrations
from pgvector.django import VectorExtension


class Migration(migrations.Migration):
    """pgvector first: chunk embeddings (and their HNSW indexes) need the `vector` type."""

    initial = True
    dependencies: list = []
    operations = [VectorExtension()]
