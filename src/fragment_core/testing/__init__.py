"""Tools for connector authors: fixtures, FakeAPI, and the connector contract suite."""
