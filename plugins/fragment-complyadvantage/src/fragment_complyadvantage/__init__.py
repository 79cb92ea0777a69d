"""fragment-complyadvantage: ComplyAdvantage screening searches and Mesh cases as tasks."""

from fragment_complyadvantage.config import MeshConfig, SearchesConfig
from fragment_complyadvantage.mesh import MeshConnector
from fragment_complyadvantage.searches import SearchesConnector

__all__ = ["MeshConfig", "MeshConnector", "SearchesConfig", "SearchesConnector"]
