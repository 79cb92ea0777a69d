"""fragment-zendesk: Zendesk Support tickets as Fragment tasks (through zenpy)."""

from fragment_zendesk.config import ZendeskConfig
from fragment_zendesk.connector import ZendeskConnector

__all__ = ["ZendeskConfig", "ZendeskConnector"]
