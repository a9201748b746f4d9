"""Code both Tessera services import, and that third-party Python APIs and clients can import
too."""
