"""Who starter credits were granted to: an inbox (``email_limit_key``), under the HMAC the ledger
reference names, and its registrable domain's share (STARTER_CREDITS_PER_DOMAIN per
STARTER_CREDITS_DOMAIN_WINDOW_DAYS). References are ``starter-credits:inbox:<domain>:<inbox>``,
both HMACs under API_KEY_PEPPER (the ledger API shows references, and a bare hash of an address
or a domain is reversed by guessing it): the domain first, so a domain's grants are a prefix
scan of the reference index (``startswith``)."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from publicsuffixlist import PublicSuffixList

from accounts.invitation_limits import email_limit_key
from accounts.models import User
from billing.models import LedgerEntry, LedgerKind
from billing.starter_verification import verified_grants

_LOCK = 0x5343  # "SC"
_SALT = "billing.starter-credits.inbox"
_DOMAIN_SALT = "billing.starter-credits.domain"
INBOX = "starter-credits:inbox:"
ADDRESS_LITERAL = "[address-literal]"  # the one domain of every IP-literal address


@dataclass(frozen=True)
class Inbox:
    """A person's inbox (``email_limit_key``) and its registrable domain."""

    address: str
    domain: str

    @property
    def reference(self) -> str:
        return f"{domain_prefix(self.domain)}{inbox_digest(self.address, settings.API_KEY_PEPPER)}"


def inbox_of(person: int) -> Inbox | None:
    """The inbox a person's address reaches (+tags, Gmail's dots and googlemail.com read away):
    each variant of one address confirms from one mailbox. None: no address."""
    email = User.objects.filter(pk=person).values_list("email", flat=True).first() or ""
    if not email.strip():
        return None
    address = email_limit_key(email)
    return Inbox(address, registrable_domain(address.rpartition("@")[2]))


@functools.cache
def _suffixes() -> PublicSuffixList:
    # ICANN suffixes only: the list's private section (eu.org, pp.ua, is-a.dev, duckdns.org...)
    # names hosts that hand out subdomains, many with their own mail, for free: each was a
    # registrable domain with a share of its own, so new subdomains' catch-alls had no limit.
    return PublicSuffixList(only_icann=True)


def registrable_domain(domain: str) -> str:
    """``domain``'s registrable part (eTLD+1 under an ICANN suffix) in punycode: x1.mallory.test
    and mallory.test are one catch-all's, so counted as one domain, and so are a1.eu.org and
    a2.eu.org (free subdomains); the domain itself when it has none. Address literals
    (``a@[203.0.113.5]``, ``a@[2001:db8::7]``: valid addresses) are one domain, ADDRESS_LITERAL:
    a mail server with many addresses (an IPv6 /64) had a share for each."""
    domain = domain.strip().strip(".").lower()
    if domain.startswith("["):
        return ADDRESS_LITERAL
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return _suffixes().privatesuffix(domain) or domain


def inbox_digest(address: str, secret: str) -> str:
    return salted_hmac(_SALT, address, secret=secret, algorithm="sha256").hexdigest()[:40]


def domain_prefix(domain: str) -> str:
    digest = salted_hmac(_DOMAIN_SALT, domain, secret=settings.API_KEY_PEPPER, algorithm="sha256")
    return f"{INBOX}{digest.hexdigest()[:16]}:"


def inbox_granted(inbox: Inbox) -> bool:
    """Whether the inbox was granted starter credits; the grants to one inbox take turns (a
    transaction-level advisory lock), so variants signing up at once cannot all pass. A grant
    of an earlier release is keyed under SECRET_KEY (or, since rotated, a SECRET_KEY_FALLBACKS
    entry) alone: the reference was ``starter-credits:inbox:<its HMAC under it>``."""
    take_turns(inbox.address)
    found = Q(reference=inbox.reference)
    for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        found |= Q(reference=f"{INBOX}{inbox_digest(inbox.address, secret)}")
    grants = LedgerEntry.objects.filter(found, kind=LedgerKind.PROMOTION)
    return grants.filter(verified_grants()).exists()


def domain_is_open(inbox: Inbox) -> bool:
    """A hosted-mailbox domain (``STARTER_CREDITS_OPEN_DOMAINS``): each address one person's."""
    open_domains = settings.STARTER_CREDITS_OPEN_DOMAINS
    return inbox.address.rpartition("@")[2] in open_domains or inbox.domain in open_domains


def domain_granted_enough(inbox: Inbox) -> bool:
    """Whether the inbox's registrable domain had its STARTER_CREDITS_PER_DOMAIN verified grants
    within STARTER_CREDITS_DOMAIN_WINDOW_DAYS: a catch-all domain (and its subdomains) confirms
    any address for one person. Open domains never have. Grants of earlier releases, whose
    references name no domain, are not counted."""
    if domain_is_open(inbox):
        return False
    prefix = domain_prefix(inbox.domain)
    take_turns(prefix)
    since = timezone.now() - timedelta(days=settings.STARTER_CREDITS_DOMAIN_WINDOW_DAYS)
    grants = LedgerEntry.objects.filter(
        kind=LedgerKind.PROMOTION, reference__startswith=prefix, created_at__gte=since
    )
    return grants.filter(verified_grants()).count() >= settings.STARTER_CREDITS_PER_DOMAIN


def take_turns(name: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            sql = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
            cursor.execute(sql, [_LOCK, name])
