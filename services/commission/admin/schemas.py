"""Request and response models of the admin routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from shared.events import PrincipalId, Text
from shared.urls import landing_template_problem


class CreateStore(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "store_id": "s1",
                    "name": "Phone Case Planet",
                    "landing_url_template": "https://shop.example/item/{product_id}",
                }
            ]
        },
    )

    store_id: PrincipalId
    name: Text = Field(min_length=1, max_length=256)
    landing_url_template: Text = Field(
        min_length=8,
        max_length=1024,
        description="Landing URL of a product link: `http` or `https` with a host; at most one "
        "`{product_id}`, in the path or the query, is replaced by the product id, and no other "
        "brace may appear. A link without product lands on the URL's origin (the store page). "
        "Otherwise 422 with the code `invalid_landing_url`.",
    )

    @field_validator("landing_url_template")
    @classmethod
    def _landing_url(cls, value: str) -> str:
        if problem := landing_template_problem(value):
            raise PydanticCustomError(
                "invalid_landing_url",
                "invalid landing URL template: {problem}",
                {"problem": problem},
            )
        return value


class CreatedStore(BaseModel):
    store_id: str
    api_key: str
    webhook_secret: str


class RotatedSecret(BaseModel):
    store_id: str
    webhook_secret: str
    previous_secret_until: datetime = Field(
        description="the previous secret still verifies until this time (the rotation's time "
        "with revoke_previous=true: refused at once)"
    )


class CreateAffiliate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"affiliate_id": "aff-a", "name": "Tech blog"}]},
    )

    affiliate_id: PrincipalId
    name: Text = Field(min_length=1, max_length=256)


class CreateFinanceUser(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"user_id": "fin-1"}]}
    )

    user_id: PrincipalId


class CreatedKey(BaseModel):
    id: str
    api_key: str
