"""The base of every generated model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ApiModel(BaseModel):
    """A body of the Alliance API. Fields the API adds later are kept (``extra="allow"``), so
    an older client still reads a newer server's answers; a field whose JSON name is not a
    Python name (a keyword) is reachable by its alias too."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_default=True)
