"""fragment-hubspot: open HubSpot CRM tasks as Fragment tasks, with completion written back."""

from fragment_hubspot.config import HubSpotConfig
from fragment_hubspot.connector import HubSpotConnector

__all__ = ["HubSpotConfig", "HubSpotConnector"]
