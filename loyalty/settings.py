"""Settings from environment variables and an optional `.env` file.

Each field's environment variable is its name in capitals (``DATABASE_URL``).
A bad value stops start-up with one line naming the variable and what it expects.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from loyalty.errors import ConfigError

__all__ = [
    "DEFAULT_RATE",
    "HttpEndpoint",
    "Settings",
    "get_settings",
    "load_settings",
    "parse_rates",
]

_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")


class HttpEndpoint(BaseModel):
    """One endpoint that journeys' `http` steps may call, by name (HTTP_ENDPOINTS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: HttpUrl
    #: Signs every request (`X-Loyalty-Signature`); share it with the receiver only.
    secret: SecretStr
    timeout_seconds: float = Field(10.0, gt=0, le=120)

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("an endpoint's secret needs at least 16 characters")
        return value


def _named_numbers(value: str, expected: str) -> dict[str, int]:
    """`name:number,name:number` as a dict; ValueError(expected) on anything else."""
    pairs: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, sep, number = part.partition(":")
        if not sep or not name.strip() or not number.strip().isdigit():
            raise ValueError(expected)
        pairs[name.strip()] = int(number)
    return pairs


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Core
    database_url: str = Field("sqlite:///./loyalty.db", description="SQLAlchemy URL")
    redis_url: str | None = Field(None, description="Redis URL; unset: in-process broker")
    default_time_zone: str = Field("UTC", description="IANA zone for members without one")
    default_locale: str = Field("en", description="locale for members without one")
    default_phone_region: str = Field("US", description="region for phones without +prefix")
    journeys_dir: Path = Field(Path("./journeys"), description="journey definitions folder")
    outbox_dir: Path = Field(Path("./outbox"), description="local outbox folder")
    outbox_files: bool = Field(
        True,
        description="the local outbox writes each message it sends as a file; off, it only "
        "records them as sent (the simulator, whose outbox is thrown away)",
    )
    public_base_url: str = Field("http://127.0.0.1:8000", description="public URL of `serve`")
    body_deadline_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="seconds a client has to send a whole request body; a stalled one gets 408",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="text (key=value lines) or json (one object a line)"
    )
    console_secret: SecretStr | None = Field(
        None, description="signs console session cookies; unset: the console is off"
    )
    console_sign_in_attempts: int = Field(
        5, ge=1, description="failed console sign-ins per email and address in the window"
    )
    console_sign_in_window_minutes: int = Field(
        15, ge=1, description="window of failed sign-ins; then one must wait for it to pass"
    )

    # Points and members
    tier_thresholds: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=lambda: {"bronze": 0, "silver": 1000, "gold": 5000},
        description="tier:lifetime points, comma separated",
    )
    points_per_currency_unit: Annotated[dict[str, Decimal], NoDecode] = Field(
        default_factory=lambda: {DEFAULT_RATE: Decimal(1)},
        description="points per unit of an order's total: a number, or CUR:rate pairs",
    )
    points_expiry_days: int = Field(365, ge=0, description="days until earned points expire")
    leap_day_birthdays: Literal["feb28", "mar1"] = "feb28"
    date_triggers_catch_up: bool = Field(
        True, description="members added after today's `at` still enter while their day lasts"
    )
    event_types: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="custom event types, comma separated"
    )

    # Runtime
    worker_threads: int = Field(4, ge=1, le=64)
    worker_processes: int = Field(2, ge=1, le=64)
    worker_timeout_ms: int = Field(
        20,
        ge=1,
        le=10_000,
        description="longest wait of an idle worker before it looks at its queues again, in ms",
    )
    worker_nice: int = Field(
        0,
        ge=0,
        le=19,
        description="how much `loyalty worker` lowers its processes' CPU priority (Unix nice): "
        "raise it where `loyalty serve` shares the host, to let the web process answer first",
    )
    worker_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="`loyalty worker` serves its processes' metrics here"
    )
    #: Read by prometheus-client itself at import; here so `/metrics` knows to merge it.
    prometheus_multiproc_dir: Path | None = Field(
        None, description="folder the processes of one host share their metrics through"
    )
    max_retries: int = Field(10, ge=0, description="retries of a transient failure")
    retry_min_backoff_ms: int = Field(1_000, ge=1)
    retry_max_backoff_ms: int = Field(15 * 60_000, ge=1)
    event_relay_after_seconds: int = Field(60, ge=1)
    event_order_wait_ms: int = Field(
        200,
        ge=1,
        le=60_000,
        description="how long a member's event waits for an earlier one still in flight "
        "before it is tried again, in ms",
    )
    scheduler_lock_ttl_seconds: int = Field(30, ge=5)
    scheduler_tick_seconds: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description="tick:seconds pairs that change how often the scheduler's jobs run "
        "(see `loyalty scheduler --list`), e.g. outbox_relay:10,due_enrollments:5",
    )

    # Messaging and the contact policy
    program_name: str = Field("Loyalty Club", description="named in SMS HELP answers and mail")
    support_contact: str = Field("support@example.com", description="in SMS HELP answers")
    sms_frequency: str = Field("up to 4 msgs/month", description="in SMS HELP answers")
    sms_quiet_hours: str = Field(
        "21:00-09:00", description="recipient-local, HH:MM-HH:MM; empty: none"
    )
    email_quiet_hours: str = Field("", description="recipient-local, HH:MM-HH:MM; empty: none")
    max_marketing_sms_per_day: int = Field(1, ge=0)
    max_marketing_emails_per_week: int = Field(3, ge=0)
    unknown_expiry_hours: int = Field(48, ge=1, description="when an unconfirmed send gives up")
    send_max_attempts: int = Field(
        8, ge=1, description="tries of one message on 429/5xx before it fails (dead letter)"
    )
    send_retry_base_seconds: int = Field(
        30, ge=1, description="wait after the first failed try; doubled after each next one"
    )
    send_retry_max_seconds: int = Field(3600, ge=1, description="longest wait between tries")
    twilio_messages_per_second: float = Field(1.0, gt=0)
    provider_timeout_seconds: float = Field(15.0, gt=0, description="longer: outcome unknown")

    # Journey `http` steps
    http_endpoints: dict[str, HttpEndpoint] = Field(
        default_factory=dict,
        description='endpoints by name, JSON: {"name": {"url": ..., "secret": ...}}',
    )
    http_max_attempts: int = Field(
        8, ge=1, description="tries of one http step on 408/429/5xx/timeouts before it fails"
    )
    journey_calls_local: bool = Field(
        False, description="http and crm_task steps write to the local outbox, calling nothing"
    )

    # Providers (used once the channels and CRM parts are configured)
    sendgrid_api_key: str | None = None
    sendgrid_base_url: str = "https://api.sendgrid.com"
    sendgrid_unsubscribe_group_id: int | None = None
    sendgrid_webhook_public_key: str | None = None
    email_from: str | None = None
    email_reply_to: str | None = None
    email_batch_gather_ms: int = Field(
        1_000,
        ge=0,
        le=60_000,
        description="an email waits until its template's due emails stop coming for this "
        "long (or fill a SendGrid request), so that they leave in one request; 0: at once",
    )
    email_batch_max_wait_ms: int = Field(
        30_000,
        ge=0,
        le=15 * 60_000,
        description="longest an email waits for its request to fill while more of its "
        "template keep coming",
    )
    postal_address: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_from: str | None = None
    twilio_base_url: str = "https://api.twilio.com"
    sms_price_per_segment: Decimal = Decimal("0.0079")
    hubspot_access_token: str | None = None
    hubspot_base_url: str = "https://api.hubapi.com"
    hubspot_client_secret: str | None = None
    hubspot_requests_per_10s: int = Field(190, ge=1)
    salesforce_instance_url: str | None = None
    salesforce_access_token: str | None = None
    salesforce_api_version: str = "59.0"

    # Shop webhooks
    shopify_webhook_secret: str | None = Field(
        None, description="the app's client secret: signs Shopify webhooks"
    )
    woocommerce_webhook_secret: str | None = Field(None, description="signs WooCommerce webhooks")
    woocommerce_earn_on_status: str = Field(
        "completed", description="the WooCommerce order status that earns points"
    )
    export_dir: Path = Field(Path("./exports"), description="GDPR exports asked for by a shop")

    # CRM sync
    crm_mapping_file: Path | None = Field(None, description="CRM field mapping; unset: defaults")
    crm_push_minutes: int = Field(5, ge=1, description="how often changed members are pushed")
    crm_pull_minutes: int = Field(15, ge=1, description="how often CRM edits are pulled back")
    crm_push_concurrency: int = Field(8, ge=1, le=32, description="CRM write calls in flight")
    crm_max_retries: int = Field(8, ge=0, description="retries of one CRM call on 429/5xx")
    salesforce_bulk_threshold: int = Field(10_000, ge=1, description="records: Bulk API 2.0")
    salesforce_budget_share: float = Field(0.8, gt=0, le=1, description="daily API share to use")
    salesforce_ca_bundle: Path | None = Field(None, description="CA file for a private server")
    salesforce_username: str | None = Field(None, description="JWT bearer: the integration user")
    salesforce_consumer_key: str | None = Field(None, description="JWT bearer: connected app")
    salesforce_private_key_file: Path | None = Field(None, description="JWT bearer: signing key")
    salesforce_login_domain: str = Field("login", description="login, test or a My Domain")

    # Shop and rewards
    shopify_shop_domain: str | None = Field(None, description="e.g. acme.myshopify.com")
    shopify_access_token: str | None = None
    shopify_api_version: str = "2025-01"
    shopify_ca_bundle: Path | None = Field(None, description="CA file for a private server")
    woocommerce_url: str | None = Field(None, description="the shop's base URL")
    woocommerce_consumer_key: str | None = None
    woocommerce_consumer_secret: str | None = None
    reward_code_secret: str | None = Field(
        None, description="HMAC key that derives reward codes; required with a shop"
    )

    # Referral program
    shop_url: str | None = Field(
        None, description="storefront that referral links lead to; unset: the shop's own URL"
    )
    referral_friend_reward: str | None = Field(
        None, description="catalog reward a referral link gives friends (their discount code)"
    )
    referral_hold_days: int = Field(
        14, ge=0, description="days after the friend's first order before the referrer is paid"
    )
    referral_max_per_day: int = Field(3, ge=1, description="referrals per referrer a day")
    referral_max_per_week: int = Field(10, ge=1, description="referrals per referrer a week")

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("expected sqlite:///PATH or postgresql://USER@HOST/DB")
        if value.startswith(("postgresql://", "postgres://")):
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("console_secret")
    @classmethod
    def _console_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 32:
            raise ValueError("needs at least 32 random characters, e.g. `openssl rand -hex 32`")
        return value

    @field_validator("sms_quiet_hours", "email_quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("expected HH:MM-HH:MM such as 21:00-09:00, or empty for none")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://HOST:PORT/DB")
        return value

    @field_validator("default_time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone such as Europe/Warsaw") from None
        return value

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if not _LOCALE.match(value):
            raise ValueError("expected a locale such as en or pl-PL")
        return value

    @field_validator("default_phone_region")
    @classmethod
    def _region(cls, value: str) -> str:
        value = value.upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("expected a two-letter region code such as US or PL")
        return value

    @field_validator("tier_thresholds", mode="before")
    @classmethod
    def _tiers(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        tiers = _named_numbers(value, "expected tier:points pairs such as bronze:0,silver:1000")
        if not tiers or min(tiers.values()) != 0:
            raise ValueError("expected tier:points pairs with one tier at 0 points")
        return tiers

    @field_validator("scheduler_tick_seconds", mode="before")
    @classmethod
    def _tick_seconds(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        ticks = _named_numbers(
            value, "expected tick:seconds pairs such as outbox_relay:10,due_enrollments:5"
        )
        if any(seconds < 1 for seconds in ticks.values()):
            raise ValueError("expected tick:seconds pairs of whole seconds from 1")
        return ticks

    @field_validator("points_per_currency_unit", mode="before")
    @classmethod
    def _rates(cls, value: object) -> object:
        if isinstance(value, int | float | Decimal):
            value = str(value)
        if not isinstance(value, str):
            return value
        return parse_rates(value)

    @field_validator("event_types", mode="before")
    @classmethod
    def _event_types(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("http_endpoints")
    @classmethod
    def _endpoint_names(cls, value: dict[str, HttpEndpoint]) -> dict[str, HttpEndpoint]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
                raise ValueError(
                    f"endpoint name {name!r} must be lower case letters, digits and underscores"
                )
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def points_rate(self, currency: str) -> Decimal | None:
        """Points per unit of `currency`: its own rule, else the default, else None."""
        rates = self.points_per_currency_unit
        return rates.get(currency.upper(), rates.get(DEFAULT_RATE))


#: The key of POINTS_PER_CURRENCY_UNIT's rate for currencies without their own.
DEFAULT_RATE = "*"
_RATE_HINT = "expected a number, or CUR:rate pairs with an optional default such as PLN:1,EUR:4,1"


def parse_rates(value: str) -> dict[str, Decimal]:
    """`2` → every currency 2; `PLN:1,EUR:4,USD:4` → those only; a bare number adds a default."""
    rates: dict[str, Decimal] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        currency, sep, rate = part.rpartition(":")
        currency = currency.strip().upper() if sep else DEFAULT_RATE
        if currency in ("DEFAULT", ""):
            currency = DEFAULT_RATE
        if currency != DEFAULT_RATE and not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValueError(f"{currency!r} is not an ISO 4217 code; {_RATE_HINT}")
        try:
            amount = Decimal(rate.strip())
        except ArithmeticError:
            raise ValueError(_RATE_HINT) from None
        if not amount.is_finite() or amount < 0:
            raise ValueError(f"rates must be zero or more; {_RATE_HINT}")
        if currency in rates:
            raise ValueError(f"{currency} is given twice; {_RATE_HINT}")
        rates[currency] = amount
    if not rates:
        raise ValueError(_RATE_HINT)
    return rates


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "SETTINGS"
            reason = str(error["msg"]).removeprefix("Value error, ")
            # Values that may carry credentials are never echoed.
            sensitive = ("KEY", "TOKEN", "SECRET", "URL", "SID", "ENDPOINTS")
            if any(hint in name for hint in sensitive):
                lines.append(f"{name}: {reason}")
            else:
                lines.append(f"{name}: {reason} (got {error.get('input')!r})")
        raise ConfigError("; ".join(lines)) from None


@functools.cache
def get_settings() -> Settings:
    return load_settings()
