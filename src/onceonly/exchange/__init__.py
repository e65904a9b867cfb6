"""exchange domain: systems, credentials, services, applications, grants and enforcement."""
