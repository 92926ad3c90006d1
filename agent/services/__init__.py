"""The gRPC services: per service a thin gRPC face (service.py) over its behaviour (local.py)."""
