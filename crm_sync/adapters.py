"""Building the CRM clients from settings: the one place that knows URLs and tokens."""

from __future__ import annotations

from crm_sync.errors import CrmNotConfigured
from crm_sync.mapping import CRMS, Crm, Mapping, load_mapping
from crm_sync.port import CrmPort
from loyalty.app import App
from loyalty.settings import Settings

__all__ = ["configured_crms", "make_adapter", "mapping_for"]

#: Salesforce counts requests per day, not per second; this only smooths bursts.
SALESFORCE_REQUESTS_PER_S = 25


def configured_crms(settings: Settings) -> list[Crm]:
    """The CRMs with credentials; sync is off when this is empty."""
    found: list[Crm] = []
    if settings.hubspot_access_token:
        found.append("hubspot")
    token = settings.salesforce_instance_url and settings.salesforce_access_token
    jwt = (
        settings.salesforce_username
        and settings.salesforce_consumer_key
        and settings.salesforce_private_key_file
    )
    if token or jwt:
        found.append("salesforce")
    return found


def mapping_for(settings: Settings) -> Mapping:
    """The mapping in CRM_MAPPING_FILE, or the shipped defaults."""
    return load_mapping(settings.crm_mapping_file)


def make_adapter(app: App, crm: str, mapping: Mapping | None = None) -> CrmPort:
    """The adapter for `crm`, paced by the app's pacers (shared through Redis by the runtime)."""
    settings = app.settings
    mapping = mapping or mapping_for(settings)
    if crm not in CRMS:
        raise CrmNotConfigured(crm, "--crm hubspot or --crm salesforce")
    if crm == "hubspot":
        from crm_sync.hubspot import HubSpotAdapter

        if not settings.hubspot_access_token:
            raise CrmNotConfigured("hubspot", "HUBSPOT_ACCESS_TOKEN")
        return HubSpotAdapter(
            mapping,
            access_token=settings.hubspot_access_token,
            base_url=settings.hubspot_base_url,
            pacer=app.pacers("hubspot", settings.hubspot_requests_per_10s, 10.0),
            search_pacer=app.pacers("hubspot-search", 4, 1.0),
            max_retries=settings.crm_max_retries,
        )
    from crm_sync.salesforce import SalesforceAdapter, connect

    def text(path: object) -> str | None:
        return str(path) if path else None

    client = connect(
        version=settings.salesforce_api_version,
        instance_url=settings.salesforce_instance_url,
        access_token=settings.salesforce_access_token,
        username=settings.salesforce_username,
        consumer_key=settings.salesforce_consumer_key,
        private_key_file=text(settings.salesforce_private_key_file),
        domain=settings.salesforce_login_domain,
        ca_bundle=text(settings.salesforce_ca_bundle),
    )
    return SalesforceAdapter(
        mapping,
        client,
        pacer=app.pacers("salesforce", SALESFORCE_REQUESTS_PER_S, 1.0),
        bulk_threshold=settings.salesforce_bulk_threshold,
        budget_share=settings.salesforce_budget_share,
        max_retries=settings.crm_max_retries,
    )
