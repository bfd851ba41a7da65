"""Load the demo company, Lumen Mobility: roles, collections and users (idempotent).

The documents themselves live in demo/ (see demo/README.md); they are indexed by the ingestion
pipeline. Every restricted collection holds canary facts found nowhere else, which the leak
tests look for.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import services
from accounts.capabilities import ADMINISTRATOR, COMPLIANCE_OFFICER, Capability
from accounts.models import User
from compliance.demo import demo_history_load
from ingestion.models import Collection
from ingestion.services import collection_create

DEMO_DIR = settings.BASE_DIR / "demo"

# slug -> (name, description); the manifest, when present, has the final word on names.
COLLECTIONS = {
    "company": ("Company handbook", "Policies and facts every employee may read."),
    "sales": ("Sales", "Pricing, dealer programme, targets and key accounts."),
    "hr": ("People & HR", "Salary bands, leave, reviews and recruiting."),
    "engineering": ("Engineering", "Battery platform, firmware, runbooks and test lab."),
    "finance": ("Finance", "Budgets, forecasts, payment terms and approval limits."),
}

# role -> collections it reads. Sales Operations reads exactly what Sales reads, so the two
# share one access profile (and would share one adapter).
ROLES = {
    "Employee": ["company"],
    "Sales": ["company", "sales"],
    "Sales Operations": ["company", "sales"],
    "HR": ["company", "hr"],
    "Engineering": ["company", "engineering"],
    "Finance": ["company", "finance"],
}
BUILTIN_READS = {ADMINISTRATOR: ["company"], COMPLIANCE_OFFICER: ["company"]}

# username, full name, roles, what the account is for
USERS = [
    ("admin", "Ada Admin", [ADMINISTRATOR], "administrator: users, roles, collections"),
    ("compliance", "Cora Compliance", [COMPLIANCE_OFFICER], "compliance officer: query log"),
    ("sam", "Sam Seller", ["Sales"], "one role: Sales"),
    ("hana", "Hana Hughes", ["HR"], "one role: HR"),
    ("eli", "Eli Engel", ["Engineering"], "one role: Engineering"),
    ("fiona", "Fiona Fischer", ["Finance"], "one role: Finance"),
    ("max", "Max Meyer", ["Sales", "Engineering"], "several roles: Sales + Engineering"),
    ("omar", "Omar Okafor", ["Sales Operations"], "shares the Sales access profile"),
    ("erin", "Erin Evans", ["Employee"], "company-wide documents only"),
    ("nora", "Nora Neumann", [], "no role: reads nothing"),
]


def _manifest_collections() -> dict:
    path = DEMO_DIR / "manifest.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text()).get("collections", {})


class Command(BaseCommand):
    help = "Create the demo company's roles, collections and users (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="do nothing when the database already has users",
        )
        parser.add_argument(
            "--no-documents",
            action="store_true",
            help="only roles, collections and users (tests that upload their own files)",
        )
        parser.add_argument(
            "--logins",
            action="store_true",
            help="only print the demo logins (username, what the account shows)",
        )

    def handle(self, *args, if_empty: bool = False, logins: bool = False, **options) -> None:
        self.with_documents = not options.get("no_documents", False)
        if logins:
            self.stdout.write(f"demo logins (password {settings.DEMO_PASSWORD!r}):")
            for username, _name, _roles, shows in USERS:
                self.stdout.write(f"  {username:<11} {shows}")
            return
        if if_empty and User.objects.exists():
            self.stdout.write("demo data: database already has users, left as it is")
            return
        self.load()

    @transaction.atomic
    def load(self) -> None:
        manifest = _manifest_collections()
        collections: dict[str, Collection] = {}
        for slug, (name, description) in COLLECTIONS.items():
            entry = manifest.get(slug, {})
            existing = Collection.objects.filter(slug=slug).first()
            collections[slug] = existing or collection_create(
                actor=None,
                name=entry.get("name", name),
                description=entry.get("description", description),
                slug=slug,
            )
        created_roles = 0
        for role_name, reads in ROLES.items():
            if not Group.objects.filter(name=role_name).exists():
                services.role_create(
                    actor=None,
                    name=role_name,
                    capabilities=[Capability.CHAT],
                    collections=[collections[s] for s in reads],
                )
                created_roles += 1
        for role_name, reads in BUILTIN_READS.items():
            role = Group.objects.get(name=role_name)
            if not role.readable_collections.exists():
                role.readable_collections.set([collections[s] for s in reads])
        created_users = 0
        for username, full_name, role_names, _shows in USERS:
            if User.objects.filter(username=username).exists():
                continue
            first, last = full_name.split(" ", 1)
            user = User(
                username=username,
                first_name=first,
                last_name=last,
                email=f"{username}@lumen-mobility.example",
            )
            user.set_password(settings.DEMO_PASSWORD)
            user.save()
            user.groups.set(Group.objects.filter(name__in=role_names))
            services.audit_record(
                actor=None, action="user.create", target=user, details={"roles": role_names}
            )
            created_users += 1
        created_documents = self.load_documents(collections) if self.with_documents else 0
        # Three weeks of query-log history for the compliance pages (only into an empty log).
        history = demo_history_load() if self.with_documents else 0
        self.stdout.write(
            f"demo data: Lumen Mobility — {len(collections)} collections, "
            f"{created_roles} roles, {created_users} users, {created_documents} documents and "
            f"{history} query-log entries created (documents are indexed by the worker)"
        )

    def load_documents(self, collections: dict[str, Collection]) -> int:
        from ingestion.services import document_import_path

        manifest = DEMO_DIR / "manifest.json"
        if not manifest.exists():
            return 0
        admin = User.objects.filter(username="admin").first()
        created = 0
        for slug, entry in json.loads(manifest.read_text())["collections"].items():
            for doc in entry["documents"]:
                result = document_import_path(
                    actor=admin,
                    collection=collections[slug],
                    path=DEMO_DIR / doc["file"],
                    title=doc.get("title", ""),
                )
                created += result.outcome == "created"
        return created
