"""Webhooks: endpoints managed by the API, events POSTed to them signed (Standard
Webhooks), durably and at least once, by tasks running beside the delivery worker."""
