from django.contrib.auth.models import Group
from django.db import models


class Collection(models.Model):
    """A named set of documents and the roles that may read it.

    A user reads the union of their roles' collections. Every document lives in exactly one
    collection and every chunk row carries its collection id, so access is one SQL filter.
    """

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    readers = models.ManyToManyField(
        Group,
        related_name="readable_collections",
        blank=True,
        help_text="Roles whose members may read this collection's documents.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
