"""A member's profile as the API takes it: the import columns, parsed by the importer's rules."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loyalty.errors import RowError
from loyalty.member_rows import KNOWN_COLUMNS

__all__ = ["FieldWarning", "MemberIn", "Profile", "warnings_of"]

_TEXT = 320


class _ProfileFields(BaseModel):
    """Absent fields are left as they are; `null` clears one."""

    email: str | None = Field(default=None, max_length=_TEXT, examples=["ada@example.com"])
    phone: str | None = Field(
        default=None, max_length=64, description="E.164, or national in DEFAULT_PHONE_REGION"
    )
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    locale: str | None = Field(default=None, max_length=16, examples=["en", "pl-PL"])
    time_zone: str | None = Field(default=None, max_length=64, examples=["Europe/Warsaw"])
    birthday: str | None = Field(
        default=None, max_length=16, description="YYYY-MM-DD, or --MM-DD without the year"
    )
    email_consent: bool | None = Field(default=None, description="marketing email consent")
    sms_consent: bool | None = Field(default=None, description="marketing SMS consent")
    referred_by_code: str | None = Field(
        default=None, max_length=32, description="the referral code of the member who referred them"
    )


class Profile(_ProfileFields):
    """The profile an event may carry: an unknown member is created from it. Other keys are
    kept as the member's attributes."""

    model_config = ConfigDict(extra="allow")

    def as_columns(self) -> dict[str, Any]:
        """The import columns sent (extra keys included), for `upsert_member`."""
        return self.model_dump(exclude_unset=True)


class MemberIn(_ProfileFields):
    """A member's profile and consents. Invalid values are left out and answered as warnings."""

    model_config = ConfigDict(extra="forbid")

    attributes: dict[str, Any] | None = Field(
        default=None, description="custom fields, merged into the member's attributes"
    )

    def as_columns(self) -> tuple[dict[str, Any], list[RowError]]:
        """The import columns sent, attributes as extra columns; names taken by a field are
        warned about and left out."""
        columns = self.model_dump(exclude_unset=True, exclude={"attributes"})
        warnings = []
        for key, value in (self.attributes or {}).items():
            if key in KNOWN_COLUMNS:
                warnings.append(
                    RowError(f"attributes.{key}", "is the name of a member field; left out")
                )
                continue
            columns[key] = value
        return columns, warnings


class FieldWarning(BaseModel):
    """An optional field left out because its value was invalid."""

    field: str
    reason: str


def warnings_of(errors: list[RowError], prefix: str = "") -> list[FieldWarning]:
    return [FieldWarning(field=prefix + error.field, reason=error.reason) for error in errors]
