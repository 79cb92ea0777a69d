"""fragment-intercom: open Intercom conversations as Fragment tasks, closed on completion."""

from fragment_intercom.config import IntercomConfig
from fragment_intercom.connector import IntercomConnector

__all__ = ["IntercomConfig", "IntercomConnector"]
