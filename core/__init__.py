"""Infrastructure under every app, with no models (docs/architecture.md): imports Django and
libraries only."""
