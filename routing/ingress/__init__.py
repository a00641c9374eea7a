"""Ingress codecs: client wire formats other than OpenAI's, translated at the gateway's edge
(``anthropic``: the Messages API of ``/v1/messages``). Not providers: they face clients."""
