"""Turnstile ingestion gateway: authenticated batches of events in, durable Kafka records out.

``create_app(GatewaySettings())`` builds the app; ``turnstile gateway`` runs it under uvicorn.
"""
