import factory
from django.contrib.auth.models import Group

from accounts.models import User
from ingestion.models import Collection

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.set(extracted)


class RoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group
        django_get_or_create = ("name",)
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Role {n}")

    @factory.post_generation
    def reads(self, create, extracted, **kwargs):
        if create and extracted:
            self.readable_collections.set(extracted)

    @factory.post_generation
    def capabilities(self, create, extracted, **kwargs):
        # Business roles may chat unless a test says otherwise, as in the product.
        if create:
            from accounts.capabilities import Capability
            from accounts.services import capability_permissions

            caps = [Capability.CHAT] if extracted is None else extracted
            self.permissions.set(capability_permissions(caps))


class CollectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Collection
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Collection {n}")
    slug = factory.Sequence(lambda n: f"collection-{n}")
