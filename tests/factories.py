"""factory_boy factories for the rows the tests build again and again: users, models, versions.

Rows with business rules are made by the services, as users make them (`_create` is
overridden): a model by `registry.services.create_model`, which records `model.created`;
a version by `registry.services.upload_version`, which stores the file, records
`version.uploaded` and enqueues its validation once the transaction commits. A factory
adds nothing a service would not do.

The personas of tests/conftest.py are made here; so are the users that a module-wide,
committed registry needs (tests/support/serving.py, tests/rollouts/conftest.py).
"""

from __future__ import annotations

import io
from typing import Any

import factory
from factory.django import DjangoModelFactory

from registry import services
from registry.demo_models import build_mlp
from registry.models import ModelVersion, RegisteredModel, VersionStatus
from registry.permissions import maintainers_group

# Every persona's password; the login tests type it.
PASSWORD = "correct horse battery"


class UserFactory(DjangoModelFactory):
    """An active user, `<username>@example.com`, through `create_user` (the password hashed).

    `maintainer=True` adds them to the `maintainers` group: they may create models, and
    maintain the ones they create.
    """

    class Meta:
        model = "auth.User"
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = PASSWORD

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        return cls._get_manager(model_class).create_user(*args, **kwargs)

    @factory.post_generation
    def maintainer(user: Any, create: bool, extracted: bool | None, **kwargs: Any) -> None:
        if create and extracted:
            user.groups.add(maintainers_group())


class AdminFactory(UserFactory):
    """A superuser, through `create_superuser`."""

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        return cls._get_manager(model_class).create_superuser(*args, **kwargs)


class RegisteredModelFactory(DjangoModelFactory):
    """A registered model, created by `actor` (its owner) through `services.create_model`."""

    class Meta:
        model = RegisteredModel

    name = factory.Sequence(lambda n: f"model-{n}")
    actor = factory.SubFactory(UserFactory, maintainer=True)

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> RegisteredModel:
        return services.create_model(**kwargs)


class ModelVersionFactory(DjangoModelFactory):
    """A version of `model` uploaded by `actor` (the model's owner unless given) through
    `services.upload_version`; further keyword arguments are the upload's fields.

    - `validate=True`: the validation a worker would run after the commit, run here in-process,
      and the version must come out ready;
    - `production=True` (with `validate`): `production` then points at it.

    Without `validate` it stays pending.
    """

    class Meta:
        model = ModelVersion

    model = factory.SubFactory(RegisteredModelFactory)
    actor = factory.LazyAttribute(lambda version: version.model.owner)
    onnx_bytes = factory.LazyFunction(lambda: build_mlp(4, [8], 3))

    @classmethod
    def _create(
        cls,
        model_class: Any,
        *args: Any,
        model: RegisteredModel,
        actor: Any,
        onnx_bytes: bytes,
        validate: bool = False,
        production: bool = False,
        **fields: Any,
    ) -> ModelVersion:
        version = services.upload_version(model, io.BytesIO(onnx_bytes), actor=actor, **fields).version
        if validate:
            services.run_validation(version.validation_jobs.get().pk)
            version.refresh_from_db()
            assert version.status == VersionStatus.READY, version.status_reason
            if production:
                services.set_alias(model, services.PRODUCTION, version, actor=actor)
        return version
