"""Every module that defines tables, imported once so SQLModel.metadata is the whole schema."""

from sqlmodel import SQLModel

import policies.models  # noqa: F401

metadata = SQLModel.metadata
