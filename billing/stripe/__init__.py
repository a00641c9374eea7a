"""Stripe top-ups: checkout and automatic top-ups (``payments``), webhook events (``webhooks``,
``events``), the API (``api``), the pay/return pages (``pages``, ``urls``) and the periodic
automatic top-up task (``tasks``). Credits move only through the ledger."""
