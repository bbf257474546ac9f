"""Signed webhooks (Standard Webhooks) for program events, delivered at least once.

* `catalog`: which member event is which webhook event, for which audience, and its payload.
* `dispatch`: committed member events -> webhook events and one delivery per endpoint.
* `endpoints`: endpoints, their secrets (shown once, rotated with 24 hours of overlap).
* `urls`: which endpoint URLs are allowed (no private, loopback, link-local or metadata ones).
* `delivery`, `worker`: leasing due deliveries, signing, sending, retrying.
"""
