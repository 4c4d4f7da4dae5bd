"""Every module that defines tables, imported once so SQLModel.metadata is the whole schema."""

from sqlmodel import SQLModel

import catalog.events
import catalog.products.models
import catalog.publishing.models  # noqa: F401

metadata = SQLModel.metadata
