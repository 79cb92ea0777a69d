"""A tiny third-party plugin used by the discovery test."""
