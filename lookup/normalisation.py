"""Supplier and text normalisation, shared by the lookup, the override rules and the model.

Card statements print one merchant in many ways: "SQ *BLUE HERON CAFE", "SumUp *Blue Heron
Cafe", "Blue Heron Cafe #0042". `supplier_key` folds these to one key ("blue heron cafe") so a
business's past expenses are found whichever way the terminal printed the name.
`normalise_text` is the lighter fold used to compare free text and rule values.
"""

import re
import unicodedata
from functools import lru_cache

# Payment processors and card terminals that print "<PREFIX> *<merchant>". The merchant is what
# identifies the supplier, so the prefix is dropped. Keys are in normalise_text form.
PROCESSOR_PREFIXES = frozenset(
    {
        "sq",
        "sumup",
        "paypal",
        "pp",
        "iz",
        "izettle",
        "zettle",
        "ztl",
        "sp",
        "tst",
        "crv",
        "wpy",
        "stripe",
        "sagepay",
        "wp",
        "dnh",
        "gocardless",
        "lsp",
        "ppl",
    }
)

# Merchants whose statement name carries an order reference after the asterisk, folded to one
# brand so every order of one business shares a key.
BRAND_ALIASES = {
    "amzn mktp": "amazon",
    "amzn mktplace": "amazon",
    "amznmktplace": "amazon",
    "amazon co uk": "amazon",
    "amazon mktplace": "amazon",
    "amazon marketplace": "amazon",
    "amzn": "amazon",
    "amz": "amazon",
    "amazon": "amazon",
    "ebay o": "ebay",
    "ebay": "ebay",
}

# Trailing legal-form words: "Acme Ltd" and "ACME LIMITED" are one supplier.
LEGAL_SUFFIXES = frozenset({"ltd", "limited", "plc", "llp", "llc", "inc", "gmbh", "co", "lt", "com", "uk"})

# Keys that name only a payment processor. Many unrelated shops share them, so a lookup match on
# one of these is weak evidence.
GENERIC_KEYS = PROCESSOR_PREFIXES | {"amazon", "ebay", "apple pay", "applepay", "google pay", "googlepay", "gpay"}

_WHITESPACE = re.compile(r"\s+")
# Phone wallets that some terminals print before or after the merchant, in normalise_text form.
_WALLET = re.compile(r"(?<= )(?:apple ?pay|google ?pay|gpay|samsung pay)(?= )")
# "T/A", "T/As" and "trading as" between a proprietor's name and the trading name.
_TRADING_AS = re.compile(r"(?:^|\s)(?:t\s*/\s*as?|trading\s+as)(?:\s|$)")
_REFERENCE_TOKEN = re.compile(r"^(?=.*\d)(?=.*[a-z])[a-z0-9]{6,}$")
_DIGITS = re.compile(r"^\d+$")


# Distinct texts whose folded form one process keeps: the model folds four fields of every
# expense, and a batch or a business repeats most of them.
NORMALISE_CACHE_SIZE = 4096


@lru_cache(maxsize=NORMALISE_CACHE_SIZE)
def normalise_text(text: str) -> str:
    """Fold text for comparison: NFKC, case, accents, punctuation and whitespace.

    Punctuation becomes a space, so "STOP & SHOP" and "Stop  Shop" compare equal and a rule value
    such as "A\\B Trading" matches literally. Returns "" only for text with no letter or digit.
    """
    folded = _strip_accents(unicodedata.normalize("NFKC", text).casefold())
    spaced = "".join(char if char.isalnum() else " " for char in folded)
    return _WHITESPACE.sub(" ", spaced).strip()


@lru_cache(maxsize=65536)
def supplier_key(name: str) -> str:
    """Return the lookup key of a supplier name; never empty for a non-blank name.

    Drops processor prefixes ("SQ *"), order references after an asterisk ("AMZN Mktp
    UK*1F37B5QZ4"), store numbers ("#0042", "STORE 2617" keeps "store"), and trailing legal forms.
    A name made only of symbols (emoji) keeps its folded text as the key.
    """
    folded = unicodedata.normalize("NFKC", name).casefold().strip()
    merchant = _trading_name(_merchant_part(folded))

    tokens = _without_wallet(normalise_text(merchant)).split()
    kept = [token for token in tokens if not _is_reference(token)] or tokens
    while len(kept) > 1 and kept[-1] in LEGAL_SUFFIXES:
        kept.pop()
    key = " ".join(kept)

    key = _apply_alias(key)
    if key:
        return key
    return normalise_text(folded) or _WHITESPACE.sub(" ", folded)


def is_generic_key(key: str) -> bool:
    """Return True when the key names a payment processor or marketplace, not one merchant."""
    return key in GENERIC_KEYS


def _merchant_part(folded: str) -> str:
    if "*" not in folded:
        return folded
    head, _, tail = folded.partition("*")
    if normalise_text(head) in PROCESSOR_PREFIXES:
        # "SQ *BLUE HERON CAFE": the merchant follows. A bare "PAYPAL *" keeps the processor.
        return tail if normalise_text(tail) else head
    # "AMZN Mktp UK*1F37B5QZ4": the merchant comes first and a reference follows.
    return head if normalise_text(head) else tail


def _without_wallet(text: str) -> str:
    """Drop a phone wallet's name ("apple pay", "google pay") printed beside the merchant's."""
    stripped = _WALLET.sub(" ", f" {text} ").strip()
    return _WHITESPACE.sub(" ", stripped) or text


def _trading_name(text: str) -> str:
    """Return the trading name of "J Smith T/A Smith Plumbing" (the part after T/A), else the text."""
    parts = _TRADING_AS.split(text, maxsplit=1)
    if len(parts) == 2 and normalise_text(parts[1]):
        return parts[1]
    return text


def _is_reference(token: str) -> bool:
    return bool(_DIGITS.match(token) and len(token) >= 2) or bool(_REFERENCE_TOKEN.match(token))


def _apply_alias(key: str) -> str:
    for prefix, brand in BRAND_ALIASES.items():
        if key == prefix or key.startswith(prefix + " "):
            return brand
    return key


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char))
